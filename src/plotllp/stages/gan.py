"""LLP-GAN first stage (Liu et al., 2019): a K-way discriminator trained adversarially against a
generator, with the proportion loss on the real bags (SPEC section 3).

Per step (``batch_bags`` whole bags of real inputs, as many generated ones):

1. discriminator step: :math:`L_D = -E_{real}[\\ell] + E_{real}[\\operatorname{softplus}\\ell]
   + E_{fake}[\\operatorname{softplus}\\ell] + L_{prop}` with :math:`\\ell` the log-sum-exp of the logits
   (:func:`plotllp.losses.gan_discriminator_loss`); the generator is not updated;
2. generator step: feature matching :math:`\\|E\\,h(x) - E\\,h(G(z))\\|^2` on the discriminator's
   penultimate features (:func:`plotllp.losses.feature_matching_loss`); the discriminator is not
   updated (no gradient reaches it, its BatchNorm statistics are frozen).

The discriminator is the model being trained (any classifier; :class:`plotllp.models.GANDiscriminator`
is the paper's), so PLOT continues from it. Both use Adam with the stage's settings; the generator's
learning rate is not scheduled.
"""

from __future__ import annotations

import math

import torch

from ..engine import EpochState, LLPData, OptimConfig, autocast
from ..errors import TrainingDivergedError
from ..losses import feature_matching_loss, gan_discriminator_loss, proportion_loss
from ..models import MLP, build_generator, features, frozen_bn_stats, sample_noise
from .base import Stage, count_setting


class GAN(Stage):
    """LLP-GAN (module docstring). ``generator``: a module mapping (N, z_dim) noise to inputs like the
    data's, or the kind :func:`plotllp.models.build_generator` builds for the data: ``conv`` (the paper's,
    for images), ``mlp``, or ``auto`` (mlp beside an MLP classifier, the data's default otherwise). A
    generator of a kind is built afresh by every :meth:`fit`, so a stage object may be reused; a module
    passed in is trained further by each fit that uses it."""

    name = "gan"

    def __init__(self, epochs: int, optim: OptimConfig | None = None, *, batch_bags: int = 4, augment=None,
                 generator: torch.nn.Module | str = "auto", z_dim: int = 100):
        super().__init__(epochs, optim)
        self.batch_bags, self.augment = count_setting("batch_bags", batch_bags), augment
        self.kind = generator if isinstance(generator, str) else None
        self.generator = None if isinstance(generator, str) else generator
        self.z_dim = int(z_dim)
        self.g_opt = None
        self._spec = None

    def _setup(self, shape, pixels: bool, device, kind: str = "auto") -> None:
        if self.kind is not None:                         # built here, for these data: built afresh
            self.generator = build_generator(shape, pixels=pixels, z_dim=self.z_dim, kind=kind)
        self._spec = {"shape": list(shape), "pixels": bool(pixels), "kind": kind}
        self.generator.to(device)
        self.g_opt = torch.optim.Adam(self.generator.parameters(), lr=self.optim.lr, betas=tuple(self.optim.betas))

    def begin(self, model, data: LLPData) -> None:
        kind = self.kind or "auto"
        if kind == "auto":
            inner = getattr(model, "net", model)
            kind = "mlp" if isinstance(inner, MLP) or isinstance(model, MLP) else "auto"
        self._setup(tuple(data.x.shape[1:]), data.x.dtype == torch.uint8, data.device, kind)

    def state_dict(self) -> dict:
        return {"spec": self._spec, "generator": self.generator.state_dict(), "g_opt": self.g_opt.state_dict()}

    def load_state_dict(self, state: dict, device) -> None:
        with torch.random.fork_rng(devices=[]):          # building the generator must not move the restored RNG
            self._setup(tuple(state["spec"]["shape"]), state["spec"]["pixels"], device, state["spec"]["kind"])
        self.generator.load_state_dict(state["generator"])
        self.g_opt.load_state_dict(state["g_opt"])

    def discriminator_step(self, model, optimizer, x, local, props) -> tuple[float, float]:
        """One update of the discriminator (the generator's output is detached); its losses."""
        with torch.no_grad():
            fake = self.generator(sample_noise(x.shape[0], self.z_dim, x.device))
        with autocast(x.device):
            logits_real, logits_fake = model(x), model(fake)
        unsup = gan_discriminator_loss(logits_real, logits_fake)
        prop = proportion_loss(logits_real, local, props)
        optimizer.zero_grad(set_to_none=True)
        (unsup + prop).backward()
        optimizer.step()
        return unsup.detach(), prop.detach()

    def generator_step(self, model, x) -> torch.Tensor:
        """One update of the generator by feature matching; the discriminator is left as it was."""
        with frozen_bn_stats(model), autocast(x.device):
            with torch.no_grad():
                f_real = features(model, x)
            f_fake = features(model, self.generator(sample_noise(x.shape[0], self.z_dim, x.device)))
        loss = feature_matching_loss(f_real, f_fake)
        self.g_opt.zero_grad(set_to_none=True)
        loss.backward(inputs=list(self.generator.parameters()))
        self.g_opt.step()
        return loss.detach()

    def train_epoch(self, model, optimizer, data: LLPData, rng) -> EpochState:
        self.generator.train()
        sums = torch.zeros(3, device=data.device)
        steps = 0
        for x, local, props in self.bag_batches(data, rng):
            unsup, prop = self.discriminator_step(model, optimizer, x, local, props)
            g = self.generator_step(model, x)
            sums += torch.stack([unsup, prop, g])
            steps += 1
        d_unsup, prop, g = (sums / max(steps, 1)).tolist()
        if not math.isfinite(g):
            raise TrainingDivergedError(f"gan: the generator loss is {g}; training diverged (try a lower learning rate)")
        return EpochState(loss=d_unsup + prop, extra={"d_loss": d_unsup + prop, "d_unsup_loss": d_unsup,
                                                      "proportion_loss": prop, "g_loss": g})
