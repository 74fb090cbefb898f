# Every IPython kernel of the course's environment imports course_utils when it starts, before
# a lesson's first `import torch`: the course then chooses how PyTorch's threads wait for work
# (COURSE_OMP_WAIT; README, "Speed on a CPU"), which OpenMP reads once, when PyTorch loads.
# `make lab` and `make book` copy this file into the environment's etc/ipython folder.
c.IPKernelApp.exec_lines = ["import course_utils"]  # noqa: F821 (IPython provides `c`)
