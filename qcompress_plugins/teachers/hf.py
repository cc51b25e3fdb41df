"""The ``hf`` teacher: any Hugging Face sequence classifier (hub id or local folder), used as it
is or fine-tuned on the task once and cached (``qcompress_plugins.bases.hf_teacher``)."""

from __future__ import annotations

from qcompress import hookimpl
from qcompress_plugins.bases.hf_teacher import HFClassifierTeacher


@hookimpl
def register_teachers(register):
    register("hf", HFClassifierTeacher)
