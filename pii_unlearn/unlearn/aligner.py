"""NSPU's aligner: from a model's hidden state of anonymised text to that of the same text with PII.

The aligner is a small MLP (d -> 2d -> 2d -> d, ReLU, dropout) trained on pairs it
generates itself: a generic template (a support ticket, an HR note, an invoice...)
filled with Faker values, and its anonymised twin with ``<ENTITY_TYPE>`` tags where
the values were, as Presidio's anonymizer writes them. Its input is the model's
mean-pooled hidden state (final layer by default) of the anonymised text, its
target the same for the filled text. No data set and no forget record is read:
the templates below are this module's own, unrelated to any victim.

A trained aligner can be saved and reused for the same model; the saved
fingerprint (model type, hidden size, layer, a hash of the head and embedding
weights) must match the model it is applied to.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pii_unlearn.errors import InputError
from pii_unlearn.lm import batched, encode, model_device, pad_right, padding_id
from pii_unlearn.pii.anonymize import anonymized_text
from pii_unlearn.pii.fakes import fake_value, make_faker
from pii_unlearn.synth.fake import fill_template, template_slots

#: Files of a saved aligner.
WEIGHTS_FILE, META_FILE = "aligner.safetensors", "aligner.json"
#: Version of the saved format.
FORMAT_VERSION = 1
#: Added to the run's seed for the aligner's Faker stream, so that its fake values never
#: replay a stream seeded with the bare seed (the demo victim's, for one).
FAKER_SEED_OFFSET = 7_919_003
#: Longest text fed to the model for a pooled state, in tokens.
MAX_STATE_TOKENS = 256

#: Generic PII-bearing texts (support, HR, billing, shipping, IT, health admin). Written for
#: this module; none is taken from a data set or from the demo victim's templates.
ALIGNER_TEMPLATES: tuple[str, ...] = (
    "Ticket #4471: {PERSON} reports that the login page fails. Call back at {PHONE_NUMBER}.",
    "Support request from {EMAIL_ADDRESS}: please reset the password for {PERSON}.",
    "Refund issued to card {CREDIT_CARD} for order placed by {PERSON} on {DATE_TIME}.",
    "HR note: {PERSON} joined the payroll team; SSN on file {US_SSN}.",
    "New hire {PERSON}, date of birth {DATE_TIME}, home address {LOCATION}.",
    "Invoice 2291 for {PERSON} is overdue; direct debit from {IBAN_CODE} failed.",
    "Billing contact: {PERSON} <{EMAIL_ADDRESS}>, phone {PHONE_NUMBER}.",
    "Parcel for {PERSON} could not be delivered to {LOCATION}; the courier will retry.",
    "Firewall blocked repeated logins for {EMAIL_ADDRESS} from {IP_ADDRESS}.",
    "VPN access granted to {PERSON} from {IP_ADDRESS} until the end of the month.",
    "Appointment confirmed for {PERSON} on {DATE_TIME}; reminders go to {PHONE_NUMBER}.",
    "Please update the mailing address of {PERSON} to {LOCATION}.",
    "Chargeback on {CREDIT_CARD}: the holder {PERSON} disputes a payment of 40 dollars.",
    "Tax form for {PERSON} lists SSN {US_SSN} and address {LOCATION}.",
    "Salary of {PERSON} is paid into account {IBAN_CODE} on the last working day.",
    "Escalation: {PERSON} wrote from {EMAIL_ADDRESS} twice about a missing parcel.",
    "Guest wifi log: device of {PERSON} connected from {IP_ADDRESS} at the front desk.",
    "Emergency contact for {PERSON} is {PHONE_NUMBER}, reachable after six.",
    "{PERSON} asked us to close the account linked to {EMAIL_ADDRESS}.",
    "The visitor badge for {PERSON}, born {DATE_TIME}, expires next Friday.",
)


def aligner_pairs(count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` pairs ``(anonymised text, filled text)`` from :data:`ALIGNER_TEMPLATES`, seeded."""
    fake = make_faker(seed + FAKER_SEED_OFFSET)
    pairs = []
    for i in range(count):
        template = ALIGNER_TEMPLATES[i % len(ALIGNER_TEMPLATES)]
        values = {slot: fake_value(fake, slot) for slot in template_slots(template)}
        filled, spans = fill_template(template, values)
        pairs.append((anonymized_text(filled, spans), filled))
    return pairs


def hidden_size(model: Any) -> int:
    """The width of the states the output head reads (its weight's second dimension)."""
    return int(output_head(model).weight.shape[1])


def output_head(model: Any) -> nn.Linear:
    """The model's output head (``lm_head``, ``embed_out``...), a linear map d -> vocabulary."""
    head = model.get_output_embeddings()
    if not isinstance(head, nn.Linear):
        raise InputError(f"model type '{model.config.model_type}' has no linear output head to edit")
    return head


@torch.no_grad()
def pooled_states(
    model: Any, tokenizer: Any, texts: Sequence[str], *, layer: int = -1, batch_size: int = 16
) -> torch.Tensor:
    """The mean over tokens of ``hidden_states[layer]`` for each text, float32 on CPU, ``(n, d)``.

    ``layer`` indexes the model's ``hidden_states`` (0 the embeddings, -1 the final
    state the output head reads).
    """
    device = model_device(model)
    pad = padding_id(tokenizer)
    out = []
    for chunk in batched(list(texts), batch_size):
        ids, mask = pad_right(
            [encode(tokenizer, t)["input_ids"][:MAX_STATE_TOKENS] for t in chunk], pad, device
        )
        states = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        if not -len(states) <= layer < len(states):
            raise InputError(
                f"layer {layer}: this model has hidden states 0..{len(states) - 1} (or -1 for the last)"
            )
        h = states[layer].float()
        m = mask.unsqueeze(-1).to(h.dtype)
        out.append(((h * m).sum(1) / m.sum(1)).cpu())
    return torch.cat(out)


def model_fingerprint(model: Any, layer: int) -> dict[str, Any]:
    """What an aligner is bound to: model type, hidden size, layer, sha256 of head and embeddings."""
    digest = hashlib.sha256()
    for weight in (output_head(model).weight, model.get_input_embeddings().weight):
        digest.update(str(tuple(weight.shape)).encode())
        digest.update(weight.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return {
        "model_type": str(model.config.model_type),
        "hidden_size": hidden_size(model),
        "layer": layer,
        "weights_sha256": digest.hexdigest(),
    }


class Aligner(nn.Module):
    """MLP d -> 2d -> 2d -> d (ReLU, dropout) between standardised states.

    The per-dimension means and scales of its inputs and targets are buffers fitted
    on the training pairs, so it maps raw states to raw states.
    """

    def __init__(self, d: int, dropout: float = 0.3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d, 2 * d),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(2 * d, 2 * d),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(2 * d, d),
        )
        for name in ("in_mean", "out_mean"):
            self.register_buffer(name, torch.zeros(d))
        for name in ("in_scale", "out_scale"):
            self.register_buffer(name, torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.in_mean) / self.in_scale
        return self.net(z) * self.out_scale + self.out_mean

    @torch.no_grad()
    def estimate(self, states: torch.Tensor) -> torch.Tensor:
        """Estimates of the filled-text states for anonymised-text ``states`` (eval mode)."""
        was = self.training
        self.eval()
        dev = self.in_mean.device
        out = self(states.to(dev, torch.float32)).cpu()
        self.train(was)
        return out


@dataclass
class AlignerFit:
    """How an aligner was trained (or that it was loaded): for the manifest and the report."""

    pairs: int
    epochs: int
    lr: float
    seed: int
    train_loss: float
    val_loss: float
    identity_val_loss: float
    seconds: float
    reused: bool = False


def _standardiser(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x.mean(0)
    scale = x.std(0, unbiased=False).clamp_min(1e-6)
    return mean, scale


def train_aligner(
    source: torch.Tensor,
    target: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    dropout: float,
    seed: int,
    val_share: float = 0.1,
    device: Any = "cpu",
) -> tuple[Aligner, AlignerFit]:
    """Fit an :class:`Aligner` from ``source`` states to ``target`` states (MSE, Adam), seeded.

    A ``val_share`` of the pairs is held out; the fit reports the held-out loss and
    that of the identity map (a state standing in for its twin) in the same
    standardised units, so the loss has a scale to be read against. Trains on
    ``device`` (the model's); the returned aligner is on the CPU.
    """
    start = time.perf_counter()
    n, d = source.shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        order = torch.randperm(n)
        n_val = max(1, round(n * val_share)) if n >= 10 else 0
        val, train = order[:n_val], order[n_val:]
        aligner = Aligner(d, dropout)
        in_mean, in_scale = _standardiser(source[train])
        out_mean, out_scale = _standardiser(target[train])
        aligner.in_mean.copy_(in_mean)
        aligner.in_scale.copy_(in_scale)
        aligner.out_mean.copy_(out_mean)
        aligner.out_scale.copy_(out_scale)
        z_src = ((source - in_mean) / in_scale).to(device)
        z_tgt = ((target - out_mean) / out_scale).to(device)
        aligner.to(device)
        optimizer = torch.optim.Adam(aligner.net.parameters(), lr=lr)
        aligner.train()
        train_loss = math.nan
        for _ in range(epochs):
            perm = train[torch.randperm(len(train))].to(device)
            total = 0.0
            for idx in batched(perm, batch_size):
                loss = nn.functional.mse_loss(aligner.net(z_src[idx]), z_tgt[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
            train_loss = total / max(len(train), 1)
        aligner.eval()
        with torch.no_grad():
            if n_val:
                v = val.to(device)
                val_loss = float(nn.functional.mse_loss(aligner.net(z_src[v]), z_tgt[v]))
                ident = (source[val] - out_mean) / out_scale
                identity = float(nn.functional.mse_loss(ident, z_tgt[v].cpu()))
            else:
                val_loss = identity = math.nan
        aligner.to("cpu")
    fit = AlignerFit(
        pairs=n,
        epochs=epochs,
        lr=lr,
        seed=seed,
        train_loss=train_loss,
        val_loss=val_loss,
        identity_val_loss=identity,
        seconds=time.perf_counter() - start,
    )
    return aligner, fit


def save_aligner(path: str | Path, aligner: Aligner, fingerprint: dict[str, Any], fit: AlignerFit) -> Path:
    """Write ``aligner`` with its fingerprint and training facts into the folder ``path``."""
    from safetensors.torch import save_file

    from pii_unlearn.artifacts import atomic_directory

    out = Path(path)
    if out.exists() and any(out.iterdir()) and not (out / META_FILE).exists():
        raise InputError(f"{out}: exists, is not empty and is not a saved aligner; choose a new folder")
    if not out.parent.exists():
        raise InputError(f"{out.parent}: folder does not exist")
    state = {k: v.detach().cpu().contiguous() for k, v in aligner.state_dict().items()}
    meta = {
        "format": FORMAT_VERSION,
        "hidden_size": int(aligner.in_mean.shape[0]),
        "dropout": float(aligner.net[2].p),
        "fingerprint": fingerprint,
        "fit": asdict(fit),
    }
    with atomic_directory(out) as tmp:
        save_file(state, str(tmp / WEIGHTS_FILE))
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out


def check_aligner_dir(path: str | Path) -> Path:
    """``path`` if it holds a saved aligner, else one clear error."""
    folder = Path(path)
    if not (folder / META_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise InputError(
            f"{folder}: not a saved aligner (no {META_FILE} and {WEIGHTS_FILE}); see --save-aligner"
        )
    return folder


def load_aligner(path: str | Path, fingerprint: dict[str, Any]) -> tuple[Aligner, AlignerFit]:
    """The aligner saved in ``path``, after checking it was trained for the model of ``fingerprint``."""
    from safetensors.torch import load_file

    folder = check_aligner_dir(path)
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        saved = meta["fingerprint"]
        fit = AlignerFit(**{**meta["fit"], "reused": True})
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"{folder}: unreadable aligner metadata ({err})") from None
    differ = [
        f"{key} {saved.get(key)!s:.16} vs {fingerprint[key]!s:.16}"
        for key in ("model_type", "hidden_size", "layer", "weights_sha256")
        if saved.get(key) != fingerprint[key]
    ]
    if differ:
        raise InputError(
            f"{folder}: this aligner was trained for another model or layer ({'; '.join(differ)}); "
            "train a new one (drop --aligner)"
        )
    aligner = Aligner(int(meta["hidden_size"]), float(meta.get("dropout", 0.3)))
    aligner.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    aligner.eval()
    return aligner, fit


__all__ = [
    "ALIGNER_TEMPLATES",
    "Aligner",
    "AlignerFit",
    "aligner_pairs",
    "check_aligner_dir",
    "load_aligner",
    "model_fingerprint",
    "output_head",
    "pooled_states",
    "save_aligner",
    "train_aligner",
]
