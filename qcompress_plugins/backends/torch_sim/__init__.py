"""The torch backend: a fused, batched statevector simulator with adjoint gradients.

- ``backend``: the plugin (``TorchBackend``, settings, which kernel runs);
- ``plan``: a circuit compiled into few stages (fused one-qubit blocks, permutations, phases);
- ``kernels``: the stages as torch operations (CUDA, backprop, X/Y readouts);
- ``cpu_program`` and ``cpu_kernel``: on the CPU, the same stages compiled by numba, a chunk of
  the batch kept in cache through the whole circuit.
"""
