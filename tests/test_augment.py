"""Images kept as one tensor and augmented whole batches at a time: the same tensors as the PIL path."""

import pytest
import torch
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from lplgrad.augment import TensorBatches, crop_flip_normalize, draw, normalize
from lplgrad.cli import cli_main
from lplgrad.datasets import Digits
from lplgrad.split import epoch_permutation
from lplgrad.transforms import eval_transform, train_transform
from helpers.records import rounds_of


@pytest.mark.parametrize(
    "channels,size,padding,mean,std",
    [
        (1, 28, 4, (0.2860,), (0.3530,)),  # Fashion-MNIST
        (3, 32, 4, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),  # CIFAR-10
        (1, 8, 1, (0.306,), (0.377,)),  # digits
    ],
)
def test_batched_augmentation_equals_the_pil_path(monkeypatch, channels, size, padding, mean, std):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (12, channels, size, size), dtype=torch.uint8, generator=g)
    offsets, flips = draw(12, padding, True, g)
    assert flips.any() and not flips.all() and offsets.min() >= 0 and offsets.max() <= 2 * padding
    batched = crop_flip_normalize(x, offsets, flips, padding, mean, std)

    pil = train_transform(size, padding, True, mean, std)  # the transform the PIL path runs
    for n in range(12):
        i, j = offsets[n].tolist()
        monkeypatch.setattr(T.RandomCrop, "get_params", staticmethod(lambda img, out, i=i, j=j: (i, j, size, size)))
        monkeypatch.setattr(
            T.RandomHorizontalFlip, "forward", lambda self, img, f=bool(flips[n]): TF.hflip(img) if f else img
        )
        img = TF.to_pil_image(x[n] if channels == 3 else x[n, 0], mode="RGB" if channels == 3 else "L")
        assert torch.equal(pil(img), batched[n])  # bit for bit
    plain = eval_transform(size, mean, std)
    img = TF.to_pil_image(x[0] if channels == 3 else x[0, 0], mode="RGB" if channels == 3 else "L")
    assert torch.equal(plain(img), normalize(x[:1], mean, std)[0])


def test_tensor_batches_shuffle_by_epoch_and_shard_evenly():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    targets = torch.arange(10)
    labeled = torch.tensor([9, 3, 5, 0, 7, 2, 8])
    tb = TensorBatches(images, targets, labeled, 3, (0.0,), (1 / 255,), train=True, seed=4, epoch=2)
    rows = torch.cat([y for _, y in tb])
    assert torch.equal(rows, labeled[epoch_permutation(7, 4, 2)])  # the PIL path's order
    tb.sampler.set_epoch(3)
    assert not torch.equal(torch.cat([y for _, y in tb]), rows) and len(tb) == 3
    shards = [
        TensorBatches(images, targets, labeled, 2, (0.0,), (1.0,), train=True, seed=4, epoch=2, rank=r, world=2)
        for r in range(2)
    ]
    got = [torch.cat([y for _, y in s]) for s in shards]
    assert len(got[0]) == len(got[1]) == 4 and len(shards[0]) == len(shards[1]) == 2
    assert set(torch.cat(got).tolist()) == set(labeled.tolist())
    x, y = next(iter(TensorBatches(images, targets, torch.tensor([4, 1]), 8, (0.0,), (1 / 255,))))
    assert y.tolist() == [4, 1] and x[:, 0, 0, 0].tolist() == pytest.approx([4.0, 1.0])  # in order, unaugmented


def test_cpu_tensor_path_is_the_pil_path_batch_for_batch(tiny_fit):
    """Same batches bit for bit, and the global generator left in the same state."""
    cli = cli_main(tiny_fit(subcommand=False), run=False)
    dm = cli.datamodule
    dm.setup()
    assert dm.arrays is not None and dm.draws == "global" and not dm.evaluates_on_device
    tensor_loader = dm.train_dataloader()
    assert isinstance(tensor_loader, TensorBatches)
    dm.in_memory, arrays, dm.arrays = False, dm.arrays, None
    pil_loader = dm.train_dataloader()
    dm.arrays = arrays
    for epoch in (0, 3):
        for loader in (tensor_loader, pil_loader):
            loader.sampler.set_epoch(epoch)
        torch.manual_seed(11)
        from_tensors = list(tensor_loader)
        after_tensors = torch.get_rng_state()
        torch.manual_seed(11)
        from_pil = list(pil_loader)
        assert torch.equal(after_tensors, torch.get_rng_state())
        assert len(from_tensors) == len(from_pil) == 2
        for (xt, yt), (xp, yp) in zip(from_tensors, from_pil):
            assert torch.equal(yt, yp) and torch.equal(xt, xp)
            assert xt.stride() == xp.stride()  # the memory format picks the conv kernels: it must match too


def test_cpu_tensor_path_gives_the_same_experiment(tiny_fit, tmp_path):
    rows = {}
    for name, value in (("tensor", "null"), ("pil", "false")):
        cli_main(tiny_fit("--data.in_memory", value, save_dir=tmp_path / name))
        rows[name] = rounds_of(tmp_path / name, "digits")
    assert [r["queried"] for r in rows["tensor"]] == [r["queried"] for r in rows["pil"]]
    assert [r["test_acc"] for r in rows["tensor"]] == [r["test_acc"] for r in rows["pil"]]


def test_seeded_draws_are_a_function_of_seed_and_epoch():
    images = torch.randint(0, 256, (30, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))

    def make():
        return TensorBatches(
            images,
            torch.arange(30),
            torch.arange(30),
            8,
            (0.5,),
            (0.5,),
            train=True,
            padding=1,
            flip=True,
            seed=3,
            epoch=5,
            draws="seeded",
        )

    torch.manual_seed(0)
    a = [x for x, _ in make()]
    torch.manual_seed(99)  # the global stream plays no part
    b = [x for x, _ in make()]
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_in_memory_off_with_workers_and_refused_without_an_array(tiny_fit, tmp_path, capsys):
    cli = cli_main(tiny_fit("--data.num_workers", "1", subcommand=False), run=False)
    cli.datamodule.setup()
    assert cli.datamodule.arrays is None  # workers asked for: the PIL path in them
    assert Digits().load(train=True).array.shape[1:] == (1, 8, 8)
    from helpers import synthetic

    synthetic.write_image_folder(tmp_path / "imgs", classes=3, per_class=6)
    with pytest.raises(SystemExit):
        cli_main(
            tiny_fit(
                "--data.dataset",
                "lplgrad.datasets.ImageFolder",
                "--data.dataset.init_args.root",
                str(tmp_path / "imgs"),
                "--data.in_memory",
                "true",
                initial=4,
                query=2,
                subset=6,
                budget=8,
            )
        )
    assert "data.in_memory needs a dataset held as one uint8 array" in capsys.readouterr().err


def test_global_draws_with_flips_follow_torchvision():
    """Fashion-MNIST's augmentation (crop and flip): image by image the PIL transform, same global stream."""
    mean, std = (0.2860,), (0.3530,)
    images = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    order = epoch_permutation(10, 7, 1)
    pil = train_transform(28, 4, True, mean, std)
    torch.manual_seed(5)
    expected = torch.stack([pil(TF.to_pil_image(images[int(i), 0], mode="L")) for i in order])
    state = torch.get_rng_state()
    torch.manual_seed(5)
    ((x, y),) = list(
        TensorBatches(
            images,
            torch.arange(10),
            torch.arange(10),
            16,
            mean,
            std,
            train=True,
            padding=4,
            flip=True,
            seed=7,
            epoch=1,
            draws="global",
        )
    )
    assert torch.equal(y, order) and torch.equal(x, expected) and torch.equal(torch.get_rng_state(), state)
    assert x.stride() == expected.stride() == (784, 784, 28, 1)
