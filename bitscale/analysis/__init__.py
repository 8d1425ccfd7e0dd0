"""The paper's "dissecting" analyses (Section 3.2): error propagation (Fig. 2), noise tolerance
(Fig. 3a/3b) and activation distributions over generation steps (Fig. 4, 11-16).

They drive a model step by step through the optional generation-phases extension of the model
contract (``bitscale.harness.phases``); results are stored as files next to the results store
(``store.py``) and drawn by ``plots.py``. See docs/analysis.md.
"""
