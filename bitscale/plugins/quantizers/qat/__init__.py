"""QAT-distill: quantization-aware training with the full-precision model as teacher (paper section 3.3).

The student is the model itself with every ``quant_layers()`` Linear swapped for a ``QuantLinear``
that fake-quantizes its weight at every forward (``WeightQuantizer``, straight-through estimator;
LSQ-style learnable scales optional) and its input activations for A < 16. The teacher is the
same model in full precision, frozen. For ``steps`` steps the student minimizes
``loss(student.forward_batch(b), teacher.forward_batch(b))`` over real training batches, with
AdamW and a cosine (or constant) learning-rate schedule; then the fake-quantized weights are
baked in (``QuantLinear.freeze_weight``) so inference costs one plain matmul, exactly like a PTQ
method's output.

Teacher outputs are computed once per batch, before the layers are swapped, and kept (up to
``teacher_cache_mb``); only batches beyond that budget need a frozen teacher copy at every step.
The last model's cache is also kept across cells (``share_teacher_cache``), keyed by a hash of its
weights and batches, so a grid of losses over one model and precision computes the teacher once.

Determinism: the model runs in eval mode (no dropout), and the batch order comes from the
``generator`` the runner passes; nothing reads the global RNG.

Modules: ``plugin`` (the ``qat`` quantizer and its hook), ``options`` (``QATOptions``), ``engine``
(the student: layer swap, parameter groups, the training loop, freezing) and ``teacher`` (the
teacher outputs, cached within and across cells). The package is the plugin (it re-exports the
hook), so its plugin name stays ``bitscale.plugins.quantizers.qat``.
"""

from bitscale.plugins.quantizers.qat.options import QATOptions
from bitscale.plugins.quantizers.qat.plugin import QAT, register_quantizers

__all__ = ["QAT", "QATOptions", "register_quantizers"]
