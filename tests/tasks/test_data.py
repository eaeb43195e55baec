"""Task data: loading (synthetic root and small slices of the shared data), encoding, windows, collation."""

import numpy as np
import pytest
import torch

from favor.data import Alphabet
from favor.tasks import DATA_ROOT_ENV, get_task, resolve_data_root
from favor.tasks.common import collate, select_subset

ALPHABET = Alphabet.protein()


def test_data_root_errors_name_the_places_tried(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="--data-root"):
        resolve_data_root(tmp_path / "absent")
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path))
    assert resolve_data_root() == tmp_path


def test_missing_file_names_the_task_and_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ec_class.tsv.gz.*'ec'|'ec'.*ec_class"):
        get_task("ec").load(tmp_path, "train")


def test_subset_is_seeded_and_ordered():
    a = select_subset(100, 10, seed=1)
    assert np.array_equal(a, select_subset(100, 10, seed=1)) and np.all(np.diff(a) > 0)
    assert len(select_subset(5, 10, seed=0)) == 5


@pytest.mark.parametrize("name", ["ec", "localization", "go_mf"])
def test_function_examples(synthetic_root, name):
    task = get_task(name)
    records = task.load(synthetic_root, "valid", limit=5)
    assert len(records) == 5
    examples = task.encode_all(records, alphabet=ALPHABET, max_tokens=24)
    for example in examples:
        assert example.input_ids[0] == ALPHABET.cls_id and example.input_ids[-1] == ALPHABET.eos_id
        assert len(example) <= 24
    batch = collate(examples, model_task=task.model_task, pad_id=ALPHABET.pad_id)
    expected = (5, task.num_labels) if task.multi_label else (5,)
    assert tuple(batch["labels"].shape) == expected


@pytest.mark.parametrize("name", ["ss3", "ss8"])
def test_secondary_structure_tiles_every_residue(synthetic_root, name):
    task = get_task(name)
    records = task.load(synthetic_root, "test")
    examples = task.encode_all(records, alphabet=ALPHABET, max_tokens=16)
    labelled = sum(int((e.labels != -100).sum()) for e in examples)
    assert labelled == sum(len(r.sequence) for r in records)
    assert all(len(e) <= 16 and e.labels[0] == -100 and e.labels[-1] == -100 for e in examples)
    # A training encoding is one random window.
    rng = np.random.default_rng(0)
    assert len(task.encode(records[0], alphabet=ALPHABET, max_tokens=16, rng=rng)) == 1


def test_contact_labels_symmetric_and_blank_near_the_diagonal(synthetic_root):
    task = get_task("contacts")
    chain = task.load(synthetic_root, "train", limit=1)[0]
    (example,) = task.encode(chain, alphabet=ALPHABET, max_tokens=200, rng=None)
    labels = example.labels
    assert torch.equal(labels, labels.T)
    (a, b) = example.spans[0]
    assert b - a == len(chain.sequence)
    assert (labels[0] == -100).all() and (labels[:, -1] == -100).all()
    i = torch.arange(a, b)
    assert (labels[i, i] == -100).all() and (labels[a, a + 5] == -100)
    distance = np.linalg.norm(chain.coords[0] - chain.coords[10])
    assert labels[a, a + 10] == float(distance < 8.0)


def test_interchain_labels_only_in_the_cross_blocks(synthetic_root):
    task = get_task("interchain")
    pair = task.load(synthetic_root, "valid", limit=1)[0]
    (example,) = task.encode(pair, alphabet=ALPHABET, max_tokens=40, rng=None)
    assert len(example) <= 40
    (a0, a1), (b0, b1) = example.spans
    assert example.input_ids[a1] == ALPHABET.eos_id and example.input_ids[b1] == ALPHABET.eos_id
    labelled = example.labels != -100
    assert labelled[a0:a1, b0:b1].all() and labelled.sum() == 2 * (a1 - a0) * (b1 - b0)
    # The window is centred on the interface, so the cropped block still holds contacts.
    assert example.labels[a0:a1, b0:b1].sum() > 0


def test_shared_data_slices(shared_root):
    for name, split in (
        ("ec", "valid"),
        ("go_mf", "test"),
        ("ss8", "valid"),
        ("contacts", "valid"),
        ("interchain", "test"),
    ):
        task = get_task(name)
        records = task.load(shared_root, split, limit=2, seed=0)
        assert len(records) == 2, name
        examples = task.encode_all(records, alphabet=ALPHABET, max_tokens=128)
        assert examples and all(len(e) <= 128 for e in examples)
    assert get_task("go_mf").load(shared_root, "valid", limit=1)[0].label.shape == (100,)
