"""The tiny zoo: models bitscale trains itself on offline data, cached as safetensors."""
