"""Plugins for the Ray executor tests, in an importable module: Ray workers unpickle these classes by name.

``fixture-kill-once`` is RTN, except that the first time it runs (the marker file does not exist
yet) it writes it and SIGKILLs its own process, i.e. the Ray worker computing the cell, as a crash or the OOM
killer would. The marker path is an option, so it reaches workers through the cell itself.
"""

import os
import signal
import types
from pathlib import Path
from typing import ClassVar

from bitscale import hookimpl
from bitscale.plugins.quantizers.rtn import RTN, RTNOptions
from bitscale.testing.toy import ToyFamily


class KillOnceOptions(RTNOptions):
    marker: str


class KillOnce(RTN):
    name: ClassVar[str] = "fixture-kill-once"
    Options: ClassVar = KillOnceOptions

    def quantize(self, model, precision, calibration, loss=None, generator=None):
        marker = Path(self.options.marker)
        if not marker.exists():
            try:
                marker.write_text(str(os.getpid()))
            except OSError:
                pass  # a marker that cannot be written: every attempt dies (retries run out)
            os.kill(os.getpid(), signal.SIGKILL)
        return super().quantize(model, precision, calibration, loss=loss, generator=generator)


def plugin():
    mod = types.ModuleType("ray_fixture_plugin")
    mod.register_models = hookimpl(lambda register: register(ToyFamily()))
    mod.register_quantizers = hookimpl(lambda register: register(KillOnce))
    return mod
