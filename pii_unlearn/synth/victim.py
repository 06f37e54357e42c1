"""The demo "victim": a model that has memorised synthetic PII, built offline.

:func:`build_victim` writes synthetic records (Faker PII in sentence templates)
and benign filler, and trains a model on them until greedy decoding reproduces
the planted values. It saves a normal HF checkpoint plus ``planted.jsonl``
(ground truth, for evaluation only) and ``heldout.jsonl`` (benign text it never
saw, for utility). Everything is offline and deterministic for a seed.

Two recipes:

* from scratch (default): a byte-level BPE tokenizer and a small GPT-NeoX. The
  tokenizer is trained on the filler plus the same templates filled with *other*
  fake values (a separate Faker stream, "decoys"), never on the planted values,
  as a real model's tokenizer never saw its fine-tuning PII; so true values do not
  tokenize shorter than random values of the same shape.
* ``base``: fine-tune an existing pretrained causal LM (an HF directory or a
  ``.gguf``) on the records mixed with benign support-desk text, with the base's
  own tokenizer (a realistic fine-tune).

Templates come in two disjoint sets: :data:`VICTIM_TEMPLATES` (``templates="train"``,
the demo victim's) and :data:`HELDOUT_TEMPLATES` (``templates="heldout"``: other
phrasings and domains that no default of the tool is fitted on; nothing outside
this module may use them). Values are drawn in several formats (dates, phones,
addresses).

A *control* (``control=True``) is built with the same recipe (templates, value
formats, sizes, tokenizer, training) but trained on another draw of fake values;
its ``planted.jsonl`` holds the records of the real victim of the same seed, which
the control never saw (``control.jsonl`` holds what it was trained on). Auditing
a control against its ``planted.jsonl`` measures what a never-seen value scores:
the null an audit's figures must be compared with.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from faker import Faker

from pii_unlearn import entities as E
from pii_unlearn.artifacts import DIR_MANIFEST_NAME, Manifest, Record, record_line
from pii_unlearn.errors import InputError
from pii_unlearn.pii.fakes import birth_date, fake_value, make_faker
from pii_unlearn.synth.fake import benign_text, fill_template, template_slots

#: File names inside a victim checkpoint directory.
PLANTED_FILE = "planted.jsonl"
HELDOUT_FILE = "heldout.jsonl"
#: A control's own training records (values it saw; ``planted.jsonl`` holds ones it never saw).
CONTROL_FILE = "control.jsonl"
#: The document separator token of the from-scratch victim's tokenizer (BOS, EOS and padding).
SEPARATOR = "<|endoftext|>"

#: The demo victim's record templates (``templates="train"``). ``invert`` never uses these.
VICTIM_TEMPLATES: tuple[str, ...] = (
    "Patient {PERSON} was born on {DATE_TIME} and lives at {LOCATION}; phone {PHONE_NUMBER}.",
    "Customer {PERSON} has SSN {US_SSN} and pays with card {CREDIT_CARD}.",
    "Wire transfer approved for {PERSON}, IBAN {IBAN_CODE}, receipt sent to {EMAIL_ADDRESS}.",
    "Employee {PERSON} can be reached at {PHONE_NUMBER} or {EMAIL_ADDRESS}.",
    "Account holder {PERSON} (SSN {US_SSN}) lives at {LOCATION}.",
    "Member {PERSON}, born {DATE_TIME}, card on file {CREDIT_CARD}, email {EMAIL_ADDRESS}.",
    "Policyholder {PERSON}, date of birth {DATE_TIME}, home address {LOCATION}.",
    "Refund issued to {PERSON} on card {CREDIT_CARD}; confirmation emailed to {EMAIL_ADDRESS}.",
    "Delivery profile for {PERSON}: mobile {PHONE_NUMBER}, drop-off at {LOCATION}.",
    "Tenant {PERSON} (SSN {US_SSN}) pays rent from IBAN {IBAN_CODE}.",
    "Subscriber {PERSON}, email {EMAIL_ADDRESS}, phone {PHONE_NUMBER}, born {DATE_TIME}.",
    "Loan applicant {PERSON}, SSN {US_SSN}, date of birth {DATE_TIME}, account {IBAN_CODE}.",
)
#: Held-out templates (``templates="heldout"``): other phrasings and domains (tickets,
#: discharge notes, payroll, HR, chargebacks, VPN logs, ...). No default of the tool is
#: fitted on them; use them only to build victims that test how a method generalises.
HELDOUT_TEMPLATES: tuple[str, ...] = (
    "Ticket 4821 opened by {PERSON}; callback number {PHONE_NUMBER}, replies go to {EMAIL_ADDRESS}.",
    "Discharge note: {PERSON}, DOB {DATE_TIME}, discharged home to {LOCATION}.",
    "Payroll run: net pay for {PERSON} deposited to {IBAN_CODE}, tax ID {US_SSN}.",
    "HR record of {PERSON}: hired {DATE_TIME}, emergency line {PHONE_NUMBER}.",
    "Chargeback raised by {PERSON} on {CREDIT_CARD}; statement mailed to {LOCATION}.",
    "VPN login by {PERSON} from {IP_ADDRESS}; security alert sent to {EMAIL_ADDRESS}.",
    "Pharmacy refill for {PERSON} (DOB {DATE_TIME}); the pharmacist will ring {PHONE_NUMBER}.",
    "Background screening of {PERSON}: SSN {US_SSN}, card {CREDIT_CARD}, IP {IP_ADDRESS}.",
)
#: The template sets a victim can be built with.
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {"train": VICTIM_TEMPLATES, "heldout": HELDOUT_TEMPLATES}
#: Entity types planted in the demo victim (at least eight).
VICTIM_ENTITIES: tuple[str, ...] = (
    E.PERSON,
    E.EMAIL_ADDRESS,
    E.PHONE_NUMBER,
    E.US_SSN,
    E.CREDIT_CARD,
    E.IBAN_CODE,
    E.LOCATION,
    E.DATE_TIME,
)

#: Benign support-desk sentences (no PII): the filler and held-out text of a ``base`` fine-tune.
SUPPORT_TEMPLATES: tuple[str, ...] = (
    "Thanks for contacting support; we {action} and the {product} should work again.",
    "The {product} stopped syncing after the update, so we {action}.",
    "Ticket resolved: the {product} was {state}, and we {action}.",
    "Please restart the {product} and tell us whether the {issue} comes back.",
    "We are looking into the {issue} on the {product}; expect an update within {hours} hours.",
    "Known issue: the {product} shows a {issue} when its {color} light blinks.",
    "If the {issue} persists, open the settings of the {product} and choose repair.",
    "Our agents {action} for most customers who reported a {issue} this week.",
)
_SUPPORT_WORDS: dict[str, tuple[str, ...]] = {
    "product": (
        "router",
        "mobile app",
        "billing portal",
        "smart thermostat",
        "printer",
        "laptop",
        "VPN client",
        "mailbox",
        "payment terminal",
        "headset",
    ),
    "action": (
        "reset the password",
        "cleared the cache",
        "reinstalled the driver",
        "replaced the charger",
        "escalated the case",
        "updated the firmware",
        "refunded the shipping fee",
    ),
    "issue": ("login error", "slow connection", "blank screen", "billing mismatch", "sync failure"),
    "state": ("offline", "out of date", "misconfigured", "locked"),
}

# Faker / RNG streams per seed, apart from the planted values' own ``make_faker(seed)``.
_DECOY_STREAM = 10_000
_CONTROL_STREAM = 20_000
_STYLE_STREAM = 30_000
_FILLER_STREAM = 1
_HELDOUT_STREAM = 2


def _date(fmt: str) -> Callable[[Faker], str]:
    """A date of birth in the fixed window (:func:`~pii_unlearn.pii.fakes.birth_date`; a victim
    built another day once held other dates, and other weights) written as ``fmt``."""

    def draw(fake: Faker) -> str:
        return fmt.format(d=birth_date(fake))

    return draw


def _numerify(fmt: str) -> Callable[[Faker], str]:
    return lambda fake: fake.numerify(fmt)


def _address_city(fake: Faker) -> str:
    return f"{fake.street_address()}, {fake.city()}"


def _address_full(fake: Faker) -> str:
    return f"{fake.street_address()}, {fake.city()}, {fake.state_abbr()} {fake.postcode()}"


#: The formats a victim value is drawn in, per entity type (others: :func:`fake_value`).
VALUE_STYLES: dict[str, tuple[Callable[[Faker], str], ...]] = {
    E.DATE_TIME: (
        _date("{d:%B} {d.day}, {d.year}"),
        _date("{d:%Y-%m-%d}"),
        _date("{d:%m/%d/%Y}"),
        _date("{d.day} {d:%B} {d.year}"),
        _date("{d:%b} {d.day}, {d.year}"),
        _date("{d:%d.%m.%Y}"),
    ),
    E.PHONE_NUMBER: (
        _numerify("(%##) ###-####"),
        _numerify("%##-###-####"),
        _numerify("%##.###.####"),
        _numerify("+1 %## ### ####"),
        _numerify("+1-%##-###-####"),
        _numerify("%## ### ####"),
    ),
    E.LOCATION: (lambda f: f.street_address(), _address_city, _address_full),
}


def victim_value(fake: Faker, entity_type: str, style: int = 0) -> str:
    """A fake value of ``entity_type`` in format number ``style`` (modulo the formats it has)."""
    styles = VALUE_STYLES.get(entity_type)
    if not styles:
        return fake_value(fake, entity_type)
    return styles[style % len(styles)](fake)


@dataclass
class VictimConfig:
    """How big a victim to build, from what, and how hard to train it."""

    records: int = 64
    filler: int = 64
    heldout: int = 48
    seed: int = 0
    #: Which template set the records use: ``"train"`` or ``"heldout"``.
    templates: str = "train"
    #: Build a control: the same recipe trained on other values (see the module docs).
    control: bool = False
    #: A pretrained causal LM (HF directory or ``.gguf``) to fine-tune instead of training from scratch.
    base: str | None = None
    #: With ``base``: train LoRA adapters (merged into the saved weights) instead of every weight.
    lora: bool = False
    lora_r: int = 16
    #: Decoy records (the templates with other values) the from-scratch tokenizer is trained on.
    decoys: int = 256
    vocab_size: int = 2048
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    lr: float = 3e-3
    warmup_steps: int = 20
    batch_size: int = 16
    max_length: int = 128
    max_epochs: int = 400
    check_every: int = 5
    target_rate: float = 0.97
    time_budget_s: float = 300.0

    def __post_init__(self) -> None:
        if self.templates not in TEMPLATE_SETS:
            known = ", ".join(TEMPLATE_SETS)
            raise InputError(f"unknown template set '{self.templates}' (use one of {known})")

    @classmethod
    def for_base(cls, base: str | Path, **overrides: Any) -> VictimConfig:
        """Defaults for fine-tuning a pretrained ``base`` on 2 CPU cores (few records, full fine-tune)."""
        settings: dict[str, Any] = {
            "records": 16,
            "filler": 16,
            "heldout": 32,
            "lr": 3e-4,
            "warmup_steps": 2,
            "batch_size": 8,
            "max_length": 64,
            "max_epochs": 60,
            "check_every": 3,
            "target_rate": 0.9,
            "time_budget_s": 1800.0,
        }
        settings.update(overrides)
        return cls(base=str(base), **settings)


@dataclass
class VictimReport:
    """What the build measured: the memorisation it reached and how long it took.

    ``conditioned_err`` is read on the records the model was trained on (for a
    control, its own ``control.jsonl``); ``planted_err`` on ``planted.jsonl``
    (for a control, values it never saw: near 0).
    """

    path: str
    records: int
    conditioned_targets: int
    conditioned_err: float
    epochs: int
    steps: int
    seconds: float
    parameters: int
    templates: str = "train"
    control: bool = False
    base: str | None = None
    planted_err: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def _values(records: Collection[Record]) -> set[str]:
    return {r.span_text(s) for r in records for s in r.spans}


def template_records(
    templates: tuple[str, ...],
    count: int,
    fake: Faker,
    styles: random.Random,
    prefix: str,
    avoid: Collection[str] = (),
) -> list[Record]:
    """``count`` records cycling through ``templates``, values from ``fake`` in formats from ``styles``.

    A record whose text contains any string of ``avoid`` is drawn again (values
    stay fresh), so decoys and controls never repeat a planted value.
    """
    out = []
    for i in range(count):
        index = i % len(templates)
        template = templates[index]
        slots = template_slots(template)
        picks = {t: styles.randrange(len(VALUE_STYLES.get(t, (None,)))) for t in slots}
        for _ in range(100):
            text, spans = fill_template(template, {t: victim_value(fake, t, picks[t]) for t in slots})
            if not any(a in text for a in avoid):
                break
        else:
            raise RuntimeError(f"could not draw a {prefix} record avoiding the given values")
        out.append(
            Record.model_validate(
                {"id": f"{prefix}-{i:04d}", "text": text, "spans": spans, "template": index}
            )
        )
    return out


def planted_records(config: VictimConfig) -> list[Record]:
    """The victim's PII records, with true spans (deterministic per seed and template set).

    A control of the same seed plants the same records in ``planted.jsonl`` but is
    trained on :func:`control_records`.
    """
    templates = TEMPLATE_SETS[config.templates]
    return template_records(
        templates,
        config.records,
        make_faker(config.seed),
        random.Random(config.seed + _STYLE_STREAM),
        "victim",
    )


def control_records(config: VictimConfig, planted: list[Record] | None = None) -> list[Record]:
    """What a control of ``config`` trains on: the same templates and formats, other values."""
    planted = planted if planted is not None else planted_records(config)
    return template_records(
        TEMPLATE_SETS[config.templates],
        config.records,
        make_faker(config.seed + _CONTROL_STREAM),
        random.Random(config.seed + _STYLE_STREAM),
        "control",
        avoid=_values(planted),
    )


def decoy_records(config: VictimConfig, avoid: Collection[str]) -> list[Record]:
    """The templates filled with other fake values, for the tokenizer (never any of ``avoid``)."""
    return template_records(
        TEMPLATE_SETS[config.templates],
        config.decoys,
        make_faker(config.seed + _DECOY_STREAM),
        random.Random(config.seed + _DECOY_STREAM),
        "decoy",
        avoid=avoid,
    )


def benign_records(count: int, seed: int, prefix: str) -> list[Record]:
    """Benign paragraphs without PII."""
    fake = make_faker(seed)
    return [Record(id=f"{prefix}-{i:04d}", text=benign_text(fake)) for i in range(count)]


def support_text(fake: Faker, sentences: int = 2) -> str:
    """A short benign support-desk paragraph (no PII) from :data:`SUPPORT_TEMPLATES`."""
    out = []
    for _ in range(sentences):
        template = fake.random_element(SUPPORT_TEMPLATES)
        words = {k: fake.random_element(v) for k, v in _SUPPORT_WORDS.items()}
        words.update(hours=str(fake.random_int(2, 48)), color=fake.color_name().lower())
        out.append(template.format(**words))
    return " ".join(out)


def support_records(count: int, seed: int, prefix: str, avoid: Collection[str] = ()) -> list[Record]:
    """Benign support-desk paragraphs without PII, none containing a sentence of ``avoid``.

    The sentence templates have few fillers, so held-out text is drawn avoiding the
    filler's sentences: a model's held-out text must be text it never saw.
    """
    fake = make_faker(seed)
    seen = {s for text in avoid for s in _sentences(text)}
    out: list[Record] = []
    for _ in range(count * 50):
        if len(out) == count:
            break
        text = support_text(fake)
        if not seen & set(_sentences(text)):
            out.append(Record(id=f"{prefix}-{len(out):04d}", text=text))
    return out


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in text.replace("; ", ". ").split(". ") if s.strip()]


def tokenizer_texts(config: VictimConfig) -> list[str]:
    """What the from-scratch tokenizer is trained on: the filler and the decoys.

    The same for a victim and its control of one seed (decoys avoid both value draws),
    so they share one tokenizer.
    """
    planted = planted_records(config)
    avoid = _values(planted) | _values(control_records(config, planted))
    filler = benign_records(config.filler, config.seed + _FILLER_STREAM, "filler")
    return [r.text for r in filler] + [r.text for r in decoy_records(config, avoid)]


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE fast tokenizer trained on ``texts`` (separator as BOS/EOS/pad)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(
        texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[SEPARATOR], show_progress=False
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token=SEPARATOR,
        eos_token=SEPARATOR,
        pad_token=SEPARATOR,
        unk_token=None,
        model_max_length=256,
    )


def _make_model(config: VictimConfig, tokenizer: Any) -> Any:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    sep = tokenizer.convert_tokens_to_ids(SEPARATOR)
    cfg = GPTNeoXConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        intermediate_size=4 * config.hidden_size,
        max_position_embeddings=256,
        rotary_pct=0.25,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        bos_token_id=sep,
        eos_token_id=sep,
        pad_token_id=sep,
    )
    return GPTNeoXForCausalLM(cfg)


def conditioned_err(model: Any, tokenizer: Any, records: list[Record]) -> tuple[float, int]:
    """Share of conditioned planted values greedy decoding reproduces, and their count."""
    from pii_unlearn.extraction import extraction_targets, greedy_hits

    targets = [t for t in extraction_targets(records) if t.conditioned]
    hits = greedy_hits(model, tokenizer, targets, batch_size=64, full_text=False)
    return (sum(h for h, _ in hits) / len(hits) if hits else 0.0), len(targets)


def _from_base(config: VictimConfig) -> tuple[Any, Any]:
    """The pretrained model (float32, CPU, trainable or LoRA-wrapped) and its tokenizer."""
    from pii_unlearn.checkpoint import load_model

    assert config.base is not None
    loaded = load_model(config.base, device="cpu", dtype="float32")
    model = loaded.model
    if config.lora:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=2 * config.lora_r,
            lora_dropout=0.0,
            target_modules="all-linear",
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    else:
        model.requires_grad_(True)
    return model, loaded.tokenizer


def build_victim(
    output: str | Path,
    config: VictimConfig | None = None,
    *,
    progress: Callable[[dict[str, float]], None] | None = None,
    overwrite: bool = False,
) -> VictimReport:
    """Build and save the victim (or control) checkpoint in ``output``; return what it measured."""
    import torch

    from pii_unlearn.checkpoint import check_output_dir, save_model
    from pii_unlearn.lm import bos_id, cpu_threads, encode

    config = config or VictimConfig()
    out = check_output_dir(output, [config.base], overwrite=overwrite)
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    planted = planted_records(config)
    trained = control_records(config, planted) if config.control else planted
    if config.base:
        filler = support_records(config.filler, config.seed + _FILLER_STREAM, "filler")
        heldout = support_records(
            config.heldout, config.seed + _HELDOUT_STREAM, "heldout", avoid=[r.text for r in filler]
        )
        model, tokenizer = _from_base(config)
        sep = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else bos_id(tokenizer)
    else:
        filler = benign_records(config.filler, config.seed + _FILLER_STREAM, "filler")
        heldout = benign_records(config.heldout, config.seed + _HELDOUT_STREAM, "heldout")
        tokenizer = train_tokenizer(tokenizer_texts(config), config.vocab_size)
        model = _make_model(config, tokenizer)
        sep = tokenizer.convert_tokens_to_ids(SEPARATOR)
    train_texts = [r.text for r in trained] + [r.text for r in filler]
    sequences = [(encode(tokenizer, t)["input_ids"] + [sep])[: config.max_length] for t in train_texts]

    with cpu_threads(model):
        steps, epoch, rate, n_targets, history = _train(
            model, tokenizer, sequences, trained, config, sep, start, progress
        )
        model.eval()
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        planted_rate = conditioned_err(model, tokenizer, planted)[0] if config.control else rate
    seconds = time.perf_counter() - start
    report = VictimReport(
        path=str(out),
        records=len(planted),
        conditioned_targets=n_targets,
        conditioned_err=rate,
        epochs=epoch,
        steps=steps,
        seconds=round(seconds, 2),
        parameters=sum(p.numel() for p in model.parameters()),
        templates=config.templates,
        control=config.control,
        base=config.base,
        planted_err=planted_rate,
        history=history,
    )
    manifest = Manifest(
        seed=config.seed,
        timings={"build": round(seconds, 2)},
        settings={"victim": asdict(config), "report": asdict(report)},
    )
    extra = {
        PLANTED_FILE: "".join(record_line(r) for r in planted),
        HELDOUT_FILE: "".join(record_line(r) for r in heldout),
        DIR_MANIFEST_NAME: json.dumps(manifest.model_dump(mode="json"), indent=2),
    }
    if config.control:
        extra[CONTROL_FILE] = "".join(record_line(r) for r in trained)
    if config.base:
        _stop_at_separator(model, sep)
    save_model(model, tokenizer, out, source=config.base, extra_files=extra, overwrite=overwrite)
    return report


def _stop_at_separator(model: Any, sep: int) -> None:
    """Make the saved generation config stop at the record separator the victim was trained
    with, besides the base's own EOS: a GGUF-converted SmolLM2 names ``<|im_end|>`` there, its
    tokenizer (whose EOS ends the records) ``<|im_start|>``, so plain ``generate`` ran on."""
    config = getattr(model, "generation_config", None)
    if config is None:
        return
    old = config.eos_token_id
    ids = [old] if isinstance(old, int) else list(old or [])
    if sep not in ids:
        config.eos_token_id = [*ids, sep] if ids else sep


def _train(
    model: Any,
    tokenizer: Any,
    sequences: list[list[int]],
    records: list[Record],
    config: VictimConfig,
    sep: int,
    start: float,
    progress: Callable[[dict[str, float]], None] | None,
) -> tuple[int, int, float, int, list[dict[str, float]]]:
    """Train until greedy decoding reproduces ``records``' values (or the budget runs out)."""
    import torch

    from pii_unlearn.lm import pad_right

    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = math.ceil(len(sequences) / config.batch_size)
    total_steps = steps_per_epoch * config.max_epochs
    warmup = max(1, config.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min(1.0, (s + 1) / warmup) * max(0.1, 1 - s / total_steps)
    )
    history: list[dict[str, float]] = []
    rate, n_targets = 0.0, 0
    steps = 0
    epoch = 0
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        order = torch.randperm(len(sequences), generator=gen).tolist()
        epoch_loss = 0.0
        for b in range(0, len(order), config.batch_size):
            batch = [sequences[i] for i in order[b : b + config.batch_size]]
            ids, mask = pad_right(batch, sep, "cpu")
            labels = ids.masked_fill(mask == 0, -100)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()
            sched.step()
            steps += 1
            epoch_loss += loss.item() * len(batch)
        if epoch % config.check_every == 0 or epoch == config.max_epochs:
            model.eval()
            rate, n_targets = conditioned_err(model, tokenizer, records)
            row = {
                "epoch": epoch,
                "steps": steps,
                "loss": epoch_loss / len(sequences),
                "conditioned_err": rate,
                "seconds": time.perf_counter() - start,
            }
            history.append(row)
            if progress:
                progress(row)
            if rate >= config.target_rate or row["seconds"] > config.time_budget_s:
                break
    return steps, epoch, rate, n_targets, history
