"""Numbers outside their range are refused when a config is built, with the key, the source and the range."""

from __future__ import annotations

import pytest

from detector.config import ConfigError, load_config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.eval_every=0", "'train.eval_every' = 0 is out of range: it must be >= 1"),
        ("data.batch_size=0", "'data.batch_size' = 0 is out of range: it must be >= 1"),
        ("train.lr=0", "'train.lr' = 0.0 is out of range: it must be > 0.0"),
        ("train.lr=-0.001", "'train.lr' = -0.001 is out of range"),
        ("train.min_lr_ratio=1.5", "'train.min_lr_ratio' = 1.5 is out of range: it must be in [0.0, 1.0]"),
        ("train.min_lr_ratio=-0.1", "'train.min_lr_ratio' = -0.1 is out of range"),
        ("train.decay_fraction=0", "'train.decay_fraction' = 0.0 is out of range: it must be in (0.0, 1.0]"),
        ("train.decay_fraction=1.2", "'train.decay_fraction' = 1.2 is out of range"),
        ("loss.assigner.topk=0", "'loss.assigner.topk' = 0 is out of range: it must be >= 1"),
        ("train.ema_decay=1.0", "'train.ema_decay' = 1.0 is out of range: it must be in [0.0, 1.0)"),
        ("model.prior_prob=0", "'model.prior_prob' = 0.0 is out of range: it must be in (0.0, 1.0)"),
        ("eval.nms_iou=2", "'eval.nms_iou' = 2.0 is out of range"),
        ("train.max_minutes=0", "'train.max_minutes' = 0.0 is out of range: it must be > 0.0"),
        ("data.workers=-1", "'data.workers' = -1 is out of range: it must be >= 0"),
    ],
)
def test_out_of_range_values_name_the_key_the_source_and_the_range(override, message):
    with pytest.raises(ConfigError) as error:
        load_config("arena_cpu", [override])
    assert message in str(error.value)
    assert "arena_cpu.yaml + overrides" in str(error.value)


@pytest.mark.parametrize(
    "override",
    [
        "train.min_lr_ratio=0",
        "train.min_lr_ratio=1",
        "train.decay_fraction=1",
        "train.max_minutes=null",
        "loss.assigner.topk=1",
    ],
)
def test_values_on_the_closed_edges_and_unset_optionals_are_accepted(override):
    load_config("arena_cpu", [override])


def test_every_shipped_config_is_in_range():
    from detector.config import CONFIG_DIR

    for path in CONFIG_DIR.glob("*.yaml"):
        load_config(path)
