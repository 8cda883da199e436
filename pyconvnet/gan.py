"""One step of (DC)GAN training without autograd: the Kyoto Univ. exercise's Algorithm 1
("(DC)GAN の学習", §6.6) with the non-saturating generator loss of its footnote 5.

::

    step = GANStep(G, D, Adam(G, lr=2e-4, beta1=0.5), Adam(D, lr=2e-4, beta1=0.5), z_dim=100)
    logs = step(real_batch, rng)      # real_batch (B/2, C, H, W) in [-1, 1]

Discriminator update: B/2 images of the data set (target 1) and B/2 images of G from
z ~ N(0, I) (target 0, G not back-propagated: the fakes are "detached"), the mean binary
cross-entropy of D's logits over the B images, one step of D's optimizer. The two halves pass
through D as separate batches (their gradients summed) so that D's batch norm sees batches of
one kind, as in the generator update (see :meth:`GANStep.discriminator_step`).

Generator update: B fresh z, G(z) through D, the loss -log D(G(z)) (binary cross-entropy
against the target 1: footnote 5's non-saturating form, whose gradient does not vanish when D
rejects the fakes, in place of minimising log(1 - D(G(z))) of eq. 65). Its gradient flows back
through D's ``backward`` (which returns the gradient with respect to D's input, the images) into
G's ``backward``; only G's optimizer steps, so D's parameters are unchanged. D's running
statistics (batch norm buffers), which its training-mode forward would update, are restored
too: the G step leaves D exactly as it found it -- the exercise's "(ii)" model frozen inside
the combined model "(iii)".
"""
from __future__ import annotations

import math

import numpy as np

from .losses import BCEWithLogitsLoss
from .training import no_input_grad

__all__ = ["GANStep", "sample_z"]


def sample_z(rng, n, z_dim, dtype=np.float32):
    """``n`` draws of z ~ N(0, I_{z_dim}) (the exercise's p_z), shape (n, z_dim)."""
    return rng.standard_normal((int(n), int(z_dim))).astype(dtype)


class GANStep:
    """The two updates of Algorithm 1 on one batch (see the module docstring).

    generator: z (N, z_dim) -> images (N, C, H, W); discriminator: images -> logits (N, 1) or (N,);
    g_optimizer / d_optimizer: bound to the generator's / the discriminator's parameters only.
    Calling it returns a dict of floats: ``d_loss`` (the discriminator's BCE on its batch of
    real + fake), ``g_loss`` (-mean log D(G(z)) of the generator step), ``d_real`` / ``d_fake``
    (mean D(x) on the real half and on the fakes of the D step)."""

    def __init__(self, generator, discriminator, g_optimizer, d_optimizer, z_dim):
        self.G, self.D = generator, discriminator
        self.g_opt, self.d_opt = g_optimizer, d_optimizer
        self.z_dim = int(z_dim)
        if self.z_dim < 1:
            raise ValueError(f"z_dim: expected a positive int, got {z_dim!r}")
        d_ids = {id(p) for p in discriminator.params.values()}
        g_ids = {id(p) for p in generator.params.values()}
        for opt, ids, name in ((g_optimizer, d_ids, "g_optimizer"), (d_optimizer, g_ids, "d_optimizer")):
            held = {id(p) for p in _optimizer_params(opt)}
            if held & ids:
                other = "discriminator" if name == "g_optimizer" else "generator"
                raise ValueError(f"{name}: holds parameters of the {other}; bind it to its own network only")
        self.loss = BCEWithLogitsLoss()

    def discriminator_step(self, real, rng):
        """D on ``real`` (target 1) and as many fakes (target 0); returns (loss, mean D(x), mean D(G(z))).

        The loss is the mean binary cross-entropy over the B = 2 len(real) images. The real and
        the fake halves go through D as two batches whose gradients are summed (not as one
        concatenated batch): D's batch norm then normalises a batch of fakes with the statistics
        of fakes, exactly as in the generator step, which sees only fakes; with one mixed batch D
        would learn to tell the halves apart through the mixed statistics, and the generator step
        would see a different D."""
        real = np.asarray(real)
        half = len(real)
        if half < 1:
            raise ValueError("real: expected a batch of at least one image, got none")
        fake = self.G.forward(sample_z(rng, half, self.z_dim, real.dtype), training=True)
        self.G.clear_cache()  # detached: nothing flows back into G here
        fake = fake.astype(real.dtype, copy=False)
        losses, probs, grads = [], [], None
        with no_input_grad(self.D):  # the images need no gradient in this step
            for x, t in ((real, 1.0), (fake, 0.0)):
                logits = self.D.forward(x, training=True).reshape(half)
                losses.append(float(self.loss.forward(logits, np.full(half, t, logits.dtype))))
                # each half's mean BCE weighs 1/2: the gradient of the mean over all B images
                self.D.backward(self.loss.backward(0.5).reshape(half, -1))
                probs.append(float(_sigmoid(logits).mean()))
                if grads is None:
                    grads = {k: g.copy() for k, g in self.D.grads.items()}
                else:
                    for k, g in self.D.grads.items():
                        g += grads[k]
        self.D.clear_cache()
        self.d_opt.step()
        return 0.5 * (losses[0] + losses[1]), probs[0], probs[1]

    def generator_step(self, n, rng, dtype=np.float32):
        """G on n fresh z through the frozen D, loss -log D(G(z)); returns the loss."""
        saved = {k: v.copy() for k, v in self.D.buffers.items()}
        try:
            fake = self.G.forward(sample_z(rng, n, self.z_dim, dtype), training=True)
            logits = self.D.forward(fake, training=True).reshape(int(n))
            loss = float(self.loss.forward(logits, np.ones(int(n), logits.dtype)))
            grad_images = self.D.backward(self.loss.backward().reshape(int(n), -1))  # D's grads: never applied
            with no_input_grad(self.G):  # nothing consumes d(loss)/dz
                self.G.backward(grad_images)
            self.g_opt.step()
        finally:
            buffers = self.D.buffers
            for k, v in saved.items():
                np.copyto(buffers[k], v)
            self.D.clear_cache()
        return loss

    def __call__(self, real, rng):
        """One D update on ``real`` (B/2 images) + B/2 fakes, then one G update on B = 2 len(real) z."""
        d_loss, d_real, d_fake = self.discriminator_step(real, rng)
        g_loss = self.generator_step(2 * len(real), rng, np.asarray(real).dtype)
        if not (math.isfinite(d_loss) and math.isfinite(g_loss)):
            raise FloatingPointError(f"GAN training diverged: d_loss {d_loss}, g_loss {g_loss}")
        return {"d_loss": d_loss, "g_loss": g_loss, "d_real": d_real, "d_fake": d_fake}


def _optimizer_params(opt):
    """The parameter arrays an optimizer updates (its (name, param, grad) entries)."""
    return [p for _, p, _ in getattr(opt, "_entries", ())]


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
