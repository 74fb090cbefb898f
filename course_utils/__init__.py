"""The Neuro-DL course's shared code; lessons import what they need from its modules.

Importing any of them first puts the course's OpenMP wait policy into the environment, while
it can still take effect (before PyTorch loads): see ``profiles.apply_openmp_policy``.
"""

from .profiles import apply_openmp_policy

apply_openmp_policy()
