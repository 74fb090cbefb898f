"""The NumPy half of the course (lessons 01 to 07, and batch norm in 09): everything
written by hand.

* ``layers``: linear layers, activations, losses, dropout, batch normalisation, initialisation,
  ``Sequential``;
* ``conv``: convolution and pooling, forward and backward;
* ``optim``: SGD, momentum, RMSProp, Adam;
* ``gradcheck``: numerical gradients to check the hand-written ones;
* ``train``: the NumPy training loop (its ``History`` and ``Evaluation`` are
  ``course_utils.history``, shared with ``training``).
"""
