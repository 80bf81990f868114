"""The `road` augmentation preset in ultralytics' training: seeded, photometric only (boxes and classes as they were),
training images only, its errors, a no-KD run that keeps it across close_mosaic and resume, and a KD run where the
teacher reads the clean image while the student reads the corrupted one."""

from __future__ import annotations

import random
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import Interrupted, stop_after_first_save

from detdistill.data.corruptions import INSTALL_HINT
from detdistill.data.road_augment import (
    PRESETS,
    ROAD_CORRUPTIONS,
    AugmentationError,
    PresetTransform,
    attach,
    attached,
    get_preset,
)

pytest.importorskip("albumentations", reason="the road preset needs pip install 'detdistill[robust]'")

TINY = dict(imgsz=64, batch=2, workers=0, plots=False, val=False, amp=False, warmup_epochs=0, exist_ok=True)


def test_the_preset_is_seeded_mixes_clean_and_corrupted_images_and_trains_at_mild_severities(coco8_yaml):
    import cv2

    preset = get_preset("road")
    draws = [preset.draw(seed) for seed in range(400)]
    assert draws == [preset.draw(seed) for seed in range(400)]
    clean = sum(d is None for d in draws) / len(draws)
    assert 0.4 < clean < 0.6
    picked = Counter(d[0] for d in draws if d)
    assert set(picked) == {"fog", "rain", "snow", "glare", "dark", "motion_blur", "noise", "jpeg"}
    assert {d[1] for d in draws if d} == {1, 2, 3}

    img = cv2.resize(cv2.imread(str(sorted((coco8_yaml.parent / "images" / "train").glob("*.jpg"))[0])), (96, 96))
    seed = next(s for s in range(100) if preset.draw(s) == ("noise", 2))
    first, applied = preset.apply(img, seed)
    again, _ = preset.apply(img.copy(), seed)
    assert applied == ("noise", 2) and np.array_equal(first, again)
    assert not np.array_equal(first, preset.apply(img, seed + 1000)[0])
    assert first.shape == img.shape and first.dtype == np.uint8 and np.abs(first.astype(int) - img).mean() > 5


def test_the_heavy_preset_corrupts_more_images_up_to_severity_four():
    road, heavy = get_preset("road"), get_preset("road-heavy")
    draws = [heavy.draw(seed) for seed in range(400)]
    clean = sum(d is None for d in draws) / len(draws)
    assert 0.12 < clean < 0.28 and clean < sum(road.draw(seed) is None for seed in range(400)) / 400
    assert {d[1] for d in draws if d} == {1, 2, 3, 4}
    assert {d[0] for d in draws if d} == {"fog", "rain", "snow", "glare", "dark", "motion_blur", "noise", "jpeg"}


def test_the_light_preset_leaves_more_images_clean_at_severities_one_and_two():
    road, light = get_preset("road"), get_preset("road-light")
    draws = [light.draw(seed) for seed in range(400)]
    clean = sum(d is None for d in draws) / len(draws)
    assert 0.67 < clean < 0.83 and clean > sum(road.draw(seed) is None for seed in range(400)) / 400
    assert {d[1] for d in draws if d} == {1, 2}
    assert {d[0] for d in draws if d} == set(ROAD_CORRUPTIONS)


def _train_dataset(coco8_yaml, preset: str | None):
    """ultralytics' own augmented training dataset of coco8 (mosaic, affine, HSV, flips), optionally with a preset."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(coco8_yaml))
    dataset = build_yolo_dataset(get_cfg(overrides={"imgsz": 96}), data["train"], 4, data, mode="train")
    if preset:
        attach(dataset, preset, keep_clean=True)
        attach(dataset, preset, keep_clean=True)  # once only
    return dataset


def test_the_transform_runs_after_ultralytics_augmentation_and_changes_pixels_not_labels(coco8_yaml):
    plain, road = _train_dataset(coco8_yaml, None), _train_dataset(coco8_yaml, "road")
    assert attached(plain) == [] and len(attached(road)) == 1
    assert isinstance(road.transforms.transforms[-1], PresetTransform)  # after mosaic, affine, flips and Format
    seen = Counter()
    for i in range(12):
        samples = []
        for ds in (plain, road):
            random.seed(i), np.random.seed(i), torch.manual_seed(i)
            samples.append(ds[i % len(ds)])
        a, b = samples
        torch.testing.assert_close(b["bboxes"], a["bboxes"])
        torch.testing.assert_close(b["cls"], a["cls"])
        assert torch.equal(b["img_clean"], a["img"])  # the same ultralytics augmentation, before the preset
        seen[b["corruption"] == "clean"] += 1
        assert torch.equal(b["img"], a["img"]) == (b["corruption"] == "clean"), b["corruption"]
        assert b["img"].dtype == torch.uint8 and b["img"].shape == a["img"].shape
    assert seen[True] and seen[False]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_run_repeats_with_the_trainers_seed_in_the_main_process_and_in_dataloader_workers(coco8_yaml, workers):
    """ultralytics seeds Python's random from the trainer's seed (and each worker from the loader's generator): two
    loaders built after the same seed give the same corruptions, pixel for pixel; another seed gives others."""
    from ultralytics.data import build_dataloader
    from ultralytics.utils.torch_utils import init_seeds

    def first_epoch(seed: int) -> list[dict]:
        init_seeds(seed)
        loader = build_dataloader(_train_dataset(coco8_yaml, "road"), batch=2, workers=workers, shuffle=True)
        try:
            return [next(iter(loader)) for _ in range(3)]
        finally:  # its workers joined now, not by the garbage collector while the next loader forks its own
            loader.close()

    a, b, c = first_epoch(0), first_epoch(0), first_epoch(1)
    assert [x["corruption"] for x in a] == [x["corruption"] for x in b]
    assert all(torch.equal(x["img"], y["img"]) for x, y in zip(a, b))
    assert [x["corruption"] for x in a] != [x["corruption"] for x in c]


def test_bad_presets_and_a_missing_albumentations_name_the_fix(monkeypatch, teacher_pt):
    from detdistill.distill import DistillationTrainer
    from detdistill.distill.student_trainer import StudentTrainer

    with pytest.raises(AugmentationError, match=r"unknown augmentation preset 'raod': choose from road"):
        StudentTrainer.with_options(augment="raod")
    assert StudentTrainer.with_options(augment=" Road").augment == "road"  # any case, kept as the presets spell it
    with pytest.raises(AugmentationError, match=r"unknown augmentation preset \['road'\]"):
        StudentTrainer.with_options(augment=["road"])
    with pytest.raises(AugmentationError, match="unknown augmentation preset 'fog'"):
        DistillationTrainer.configure(teacher_pt, "default", augment="fog")
    with pytest.raises(AugmentationError, match=r"teacher_clean needs an augmentation preset \(--augment road"):
        DistillationTrainer.configure(teacher_pt, "default", teacher_clean=True)
    monkeypatch.setitem(sys.modules, "albumentations", None)  # import albumentations now raises ImportError
    with pytest.raises(AugmentationError) as err:
        StudentTrainer.with_options(augment="road")
    assert "needs albumentations, which is not installed" in str(err.value) and INSTALL_HINT in str(err.value)
    assert StudentTrainer.with_options(freeze_bn=True).augment is None  # no preset, no albumentations needed


class _Recording:
    """Mixed into a trainer: records each training batch after preprocessing, and each close_mosaic (whether it
    rebuilt the transforms, and how many preset transforms they had after it)."""

    batches: list[dict] = []
    closed: list[tuple[bool, int]] = []

    def preprocess_batch(self, batch):
        batch = super().preprocess_batch(batch)
        type(self).batches.append({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()})
        return batch

    def _close_dataloader_mosaic(self):
        before = self.train_loader.dataset.transforms
        super()._close_dataloader_mosaic()
        type(self).closed.append((self.train_loader.dataset.transforms is not before,
                                  len(attached(self.train_loader.dataset))))


def test_a_plain_student_trains_with_the_preset_keeps_it_after_close_mosaic_and_on_resume(coco8_yaml, tmp_path):
    """Two epochs, the last without mosaic, interrupted after the first: training images corrupted, validation images
    not; resumed by a trainer that was not told about the preset, the run goes on with it."""
    from ultralytics import YOLO

    from detdistill.distill.student_trainer import StudentTrainer
    from detdistill.distill.students import scaled_model_yaml

    trainer = type("Rec", (_Recording, StudentTrainer.with_options(augment=" Road")), {"batches": [], "closed": []})
    student = scaled_model_yaml("yolov8", width=0.0625, out=tmp_path / "yolov8n-q.yaml")
    model = YOLO(str(student))
    model.add_callback("on_model_save", stop_after_first_save)
    with pytest.raises(Interrupted):
        model.train(trainer=trainer, data=str(coco8_yaml), epochs=2, close_mosaic=1, seed=1,
                    project=str(tmp_path), name="run", **TINY)
    t = model.trainer
    assert len(attached(t.train_loader.dataset)) == 1 and attached(t.test_loader.dataset) == []
    labels = [c for b in trainer.batches for c in b["corruption"]]
    assert len(labels) == 4 and "img_clean" not in trainer.batches[0]  # no teacher: no clean copy
    assert any(c != "clean" for c in labels), labels
    last = tmp_path / "run" / "weights" / "last.pt"
    assert torch.load(last, weights_only=False)["ema"].train_augment == {"augment": "road"}  # as presets spell it
    record = yaml.safe_load((tmp_path / "run" / "detdistill.yaml").read_text())  # args.yaml's augment is TTA's
    assert (record["augment"], record["teacher"], record["teacher_clean"]) == ("road", None, False)

    resumed = type("Rec", (_Recording, StudentTrainer), {"batches": [], "closed": []})
    model = YOLO(str(last))
    model.train(trainer=resumed, resume=True)
    t = model.trainer
    assert t.augment == "road" and t.epoch == 1 and len(resumed.batches) == 2
    assert resumed.closed == [(True, 1)]  # close_mosaic rebuilt the transforms; the preset was put back
    assert attached(t.test_loader.dataset) == []
    assert any(c != "clean" for b in resumed.batches for c in b["corruption"])


def test_kd_with_teacher_clean_feeds_the_teacher_the_clean_image_and_the_student_the_corrupted_one(
        teacher_pt, coco8_yaml, tmp_path):
    """A real KD epoch on coco8: hooks on the teacher and the student record what each network read."""
    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import unwrap_model

    from detdistill.distill import DistillationTrainer
    from detdistill.distill.students import scaled_model_yaml

    teacher = shutil.copy(teacher_pt, tmp_path / "teacher.pt")
    configured = DistillationTrainer.configure(teacher, "default", augment="road", teacher_clean=True)
    trainer = type("Rec", (_Recording, configured), {"batches": [], "closed": []})
    inputs: dict[str, list[torch.Tensor]] = {"teacher": [], "student": []}

    def hook_networks(t) -> None:
        kd = unwrap_model(t.model)
        for role in inputs:
            getattr(kd, f"{role}_model").register_forward_pre_hook(
                lambda m, args, role=role: inputs[role].append(args[0].detach().clone()))

    student = scaled_model_yaml("yolov8", width=0.0625, out=tmp_path / "yolov8n-q.yaml")
    model = YOLO(str(student))
    model.add_callback("on_pretrain_routine_end", hook_networks)
    model.add_callback("on_model_save", stop_after_first_save)
    with pytest.raises(Interrupted):
        model.train(trainer=trainer, data=str(coco8_yaml), epochs=2, close_mosaic=0, seed=1,
                    project=str(tmp_path), name="run", **TINY)

    assert len(trainer.batches) == len(inputs["teacher"]) == len(inputs["student"]) == 2
    corrupted = 0
    for batch, seen_by_teacher, seen_by_student in zip(trainer.batches, inputs["teacher"], inputs["student"]):
        assert torch.equal(seen_by_teacher, batch["img_clean"]) and torch.equal(seen_by_student, batch["img"])
        for i, label in enumerate(batch["corruption"]):
            same = torch.equal(batch["img"][i], batch["img_clean"][i])
            assert same == (label == "clean"), label
            corrupted += not same
    assert corrupted > 0

    kd_config = torch.load(tmp_path / "run" / "weights" / "last.pt", weights_only=False)["ema"].kd_config
    assert kd_config["augment"] == "road" and kd_config["teacher_clean"] is True
    record = yaml.safe_load((tmp_path / "run" / "detdistill.yaml").read_text())
    assert record["teacher"] == str(Path(teacher).resolve()) and record["recipe"]["losses"]
    assert (record["augment"], record["teacher_clean"], record["int8"]) == ("road", True, False)
    # resumed as detdistill.distill.api.resume does today (teacher, recipe, class map, freeze_bn, int8 only):
    # the checkpoint's preset and teacher_clean carry on
    plain_kd = DistillationTrainer.configure(teacher, "default")
    resumed = type("Rec", (_Recording, plain_kd), {"batches": [], "closed": []})
    model = YOLO(str(tmp_path / "run" / "weights" / "last.pt"))
    model.train(trainer=resumed, resume=True)
    assert model.trainer.augment == "road" and model.trainer.teacher_clean
    assert all("img_clean" in b for b in resumed.batches) and len(resumed.batches) == 2
