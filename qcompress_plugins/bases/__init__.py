"""Bases and helpers the first-party plugins share, and third-party plugins may use too:

- ``finetuned``: ``FinetunedStudent``, a Hugging Face model fine-tuned on the task's texts
  (a sequence classifier, or a causal LM on a language-modelling task), with the shared
  training loop; the ``hf``, ``distil`` and adapter students build on it;
- ``hf_teacher``: ``HFClassifierTeacher``, a sequence classifier fine-tuned once per task and
  cached; the ``hf`` and ``minilm`` teachers;
- ``language``: loading causal LMs, batches with padding masked out, token losses.

The frozen-feature student base is part of the core's public API
(``qcompress.FrozenFeatureStudent``), since it needs nothing but the run context.
"""
