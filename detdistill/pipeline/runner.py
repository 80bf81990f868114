"""``detdistill run``: data, teacher, student (pruned), distillation, export, INT8, engines, measurements, report.

Every stage goes through :class:`StageCache`, so a rerun skips what is up to date and an interrupted
training resumes from its ``last.pt``.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import atomic
from ..export.platform_info import GpuInfo, detect_gpu
from .config import PipelineError, load_pipeline
from .stages import StageCache

Log = Callable[[str], None]
BUDGET_IMAGES = 500  # train images on which export.int8.max_drop is checked
QAD = "student, QAD"  # the quantization-aware distilled student (export.int8.qad)


def _train_args(cfg: dict, run_dir: Path, extra: dict | None = None) -> dict[str, Any]:
    args = {"imgsz": cfg["imgsz"], "seed": cfg["seed"], "plots": False, "exist_ok": True,
            "project": str(run_dir.parent), "name": run_dir.name}
    if cfg["device"] is not None:
        args["device"] = cfg["device"]
    return {**args, **cfg["train"], **(extra or {})}


def _finished(run_dir: Path) -> bool:
    """True when ``run_dir`` holds a finished ultralytics run (its last.pt was stripped at the end)."""
    import pickle

    import torch

    last = run_dir / "weights" / "last.pt"
    if not last.is_file():
        return False
    try:
        return torch.load(last, map_location="cpu", weights_only=False).get("optimizer") is None
    except (RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise PipelineError(f"{last} is not a loadable checkpoint (truncated or corrupted: {str(e).split('.')[0]}); "
                            f"delete {run_dir} and rerun to train this stage again") from e


def check_train_settings(cfg: dict) -> None:
    """Fail before the first stage on a trainer argument ultralytics does not know (e.g. ``epoch``)."""
    from ..distill.trainer import check_train_args

    check_train_args(cfg["train"], " in the recipe's train: section")
    if cfg["teacher"]["kind"] == "train":
        check_train_args(cfg["teacher"]["train"]["args"], " in the recipe's teacher.train.args")


def train_student(student: str | Path, data: Path, run_dir: Path, args: dict, teacher: Path | None = None,
                  recipe: Any = None, class_map: dict | None = None, freeze_bn: bool = False, int8: bool = False) -> Path:
    """Train (with KD when ``teacher`` is given) into ``run_dir``; resume an interrupted run; return best.pt.
    ``freeze_bn`` keeps the student's BatchNorm statistics fixed (see :class:`detdistill.distill.student_trainer.StudentTrainer`);
    ``int8`` (with a teacher): quantization-aware distillation (:mod:`detdistill.distill.qad`)."""
    from ultralytics import YOLO

    from ..distill import api
    from ..distill.student_trainer import StudentTrainer

    best, last = run_dir / "weights" / "best.pt", run_dir / "weights" / "last.pt"
    if _finished(run_dir):
        return best
    if last.is_file():  # interrupted: carry on from the last epoch
        if teacher is not None:
            return api.resume(last)
        YOLO(str(last)).train(trainer=StudentTrainer.with_frozen_bn(freeze_bn), resume=True)
        return best
    if teacher is not None:
        checked, _ = api.check_inputs(student, teacher, data, recipe, class_map or None)
        return api.fit(student, teacher, data, checked, class_map or None, freeze_bn, int8, **args)
    YOLO(str(student)).train(trainer=StudentTrainer.with_frozen_bn(freeze_bn), data=str(data), **args)
    return best


def model_stats(weights: Path, imgsz: int) -> tuple[int, float]:
    """Parameters and GFLOPs (at ``imgsz``) of a ``.pt`` checkpoint."""
    from ..models import count_gflops, count_params, load_detection_checkpoint

    model = load_detection_checkpoint(weights)[0].float()
    return count_params(model), count_gflops(model, imgsz)


def describe_machine(gpu: GpuInfo | None) -> str:
    """CPU, GPU and runtime versions, for the report."""
    parts = [f"{platform.machine()}, {os.cpu_count()} CPU cores", gpu.name if gpu else "no GPU"]
    try:
        import onnxruntime

        parts.append(f"onnxruntime {onnxruntime.__version__}")
    except ImportError:
        pass
    trt = _tensorrt_version()
    parts.append(f"TensorRT {trt}" if trt else "no TensorRT")
    return "; ".join(parts)


def _tensorrt_version() -> str | None:
    try:
        import tensorrt

        return tensorrt.__version__
    except ImportError:
        return None


class Pipeline:
    """One pipeline run in ``workdir``; :meth:`run` returns the path of ``report.md``."""

    def __init__(self, cfg: dict, recipe_text: str, workdir: Path, log: Log = print):
        self.cfg, self.recipe_text, self.log = cfg, recipe_text, log
        self.work = workdir.resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.stages = StageCache(self.work, log)
        self.notes: list[str] = []
        self.gpu = detect_gpu()

    # --- inputs --------------------------------------------------------------------------------------
    def data(self) -> Path:
        d = self.cfg["data"]
        if d["kind"] == "yaml":
            path = Path(d["yaml"])
            if not path.is_file():
                raise FileNotFoundError(f"data.yaml: {path} does not exist")
            return path.resolve()
        if d["kind"] == "shapes":
            from ..data.shapes import make_shapes_dataset

            s = d["shapes"]
            out = self.work / "data"
            return Path(self.stages.run("data", s, [out / "data.yaml"], lambda: str(
                make_shapes_dataset(out, n_train=s["n_train"], n_val=s["n_val"], size=s["size"], seed=self.cfg["seed"]))))
        from ..data.coco_subset import chosen_classes, make_coco_subset

        s = d["coco_subset"]
        classes, _ = chosen_classes(s["classes"], s["preset"])
        out = self.work / "data"
        return Path(self.stages.run("data", {**s, "classes": classes}, [out / "data.yaml"], lambda: str(make_coco_subset(
            Path(s["coco"]), out, classes, max_images=s["max_images"], include_empty=s["negatives"], seed=self.cfg["seed"]))))

    def teacher(self, data: Path) -> Path:
        t = self.cfg["teacher"]
        if t["kind"] == "weights":
            from ..registry.weights import resolve_weights

            return resolve_weights(t["weights"]).resolve()
        spec = t["train"]
        run_dir = self.work / "teacher"
        best = run_dir / "weights" / "best.pt"
        args = _train_args(self.cfg, run_dir, {"epochs": spec["epochs"], **spec["args"]})
        return Path(self.stages.run("teacher", {"spec": spec, "data": data, "args": args}, [best],
                                    lambda: str(train_student(spec["model"], data, run_dir, args)), clean=(run_dir,)))

    def with_unlabeled(self, data: Path, teacher: Path) -> Path:
        d = self.cfg["data"]
        if not d["unlabeled"]:
            return data
        from ..data.unlabeled import add_unlabeled

        images = Path(d["unlabeled"])
        out = self.work / "unlabeled" / "data-with-unlabeled.yaml"
        key = {"images": images, "teacher": teacher, "data": data, "conf": d["pseudo_conf"]}
        merged = Path(self.stages.run("label unlabeled images with the teacher", key, [out], lambda: str(add_unlabeled(
            data, teacher, images, self.work / "unlabeled", self.cfg["distill"]["class_map"] or None,
            d["pseudo_conf"], self.cfg["imgsz"], self.cfg["device"]))))
        self._note(f"The distilled student also trained on the images in {images}, labelled by the teacher "
                   f"(confidence >= {d['pseudo_conf']}); the student without KD saw the labelled data only.")
        return merged

    def student(self, teacher: Path, data: Path) -> str:
        s = self.cfg["student"]
        if s["kind"] == "model":
            return s["model"]
        if s["kind"] == "weights":  # fine-tune a checkpoint as it is (with student.imgsz: the teacher, smaller input)
            if str(s["weights"]) == "teacher":
                return str(teacher)
            if not Path(s["weights"]).is_file():
                raise PipelineError(f"student.weights: {s['weights']} does not exist; give a .pt file or 'teacher'")
            return str(s["weights"])
        if s["kind"] == "width":
            from ..distill.students import scaled_model_yaml
            from ..models import load_detection_checkpoint

            model = load_detection_checkpoint(teacher, role="teacher", tasks=("detect", "segment", "pose", "obb"))[0]
            family = "yolo11" if "yolo11" in str(model.yaml.get("yaml_file", "")) else "yolov8"
            return str(scaled_model_yaml(family, width=s["width"], out=self.work / f"{family}n-student.yaml"))
        from ..prune import prune_checkpoint

        p = s["prune"]
        out = self.work / "student-pruned.pt"
        kwargs = {"target": p["target"], "metric": p["metric"], "imgsz": s["imgsz"]}
        if p["importance"]:
            kwargs["importance"] = p["importance"]
        if p["refit"]:  # least-squares refit of the pruned layers on the train images (prune/reconstruct.py)
            kwargs.update(calib=data, calib_images=p["calib_images"])
        return self.stages.run("prune", {"teacher": teacher, **kwargs}, [out],
                               lambda: str(prune_checkpoint(teacher, out, **kwargs).path))

    # --- training --------------------------------------------------------------------------------------
    def students(self, student: str, data: Path, kd_data: Path, teacher: Path) -> dict[str, Path]:
        """The no-KD baseline (on the labelled data) and the distilled student (on ``kd_data``: the labelled data
        plus any teacher-labelled images), as configured; name -> best.pt."""
        dist, out = self.cfg["distill"], {}
        student_key = Path(student) if Path(student).is_file() else student
        size = {"imgsz": self.cfg["student"]["imgsz"]}  # the teacher reads the student's batches at this size too
        freeze = self.cfg["student"]["freeze_bn"]
        if dist["baseline"]:
            run_dir = self.work / "student-no-kd"
            args = _train_args(self.cfg, run_dir, size)
            out["student, no KD"] = Path(self.stages.run(
                "train student without KD", {"student": student_key, "data": data, "args": args, "freeze_bn": freeze},
                [run_dir / "weights" / "best.pt"],
                lambda: str(train_student(student, data, run_dir, args, freeze_bn=freeze)),
                clean=(run_dir,)))
        if dist["recipe"]:
            run_dir = self.work / "student-kd"
            args = _train_args(self.cfg, run_dir, size)
            key = {"student": student_key, "data": kd_data, "args": args, "teacher": teacher,
                   "recipe": dist["recipe"], "class_map": dist["class_map"], "freeze_bn": freeze}
            out["student, KD"] = Path(self.stages.run(
                f"distill student ({dist['recipe']})", key, [run_dir / "weights" / "best.pt"],
                lambda: str(train_student(student, kd_data, run_dir, args, teacher, dist["recipe"], dist["class_map"],
                                          freeze)),
                clean=(run_dir,)))
        return out

    def qad(self, student_pt: Path, kd_data: Path, teacher: Path) -> Path:
        """The final student fine-tuned with INT8 fake quantization under the KD losses (export.int8.qad)."""
        q, dist = self.cfg["export"]["int8"]["qad"], self.cfg["distill"]
        recipe = q["recipe"] or dist["recipe"] or "default"
        run_dir = self.work / "student-qad"
        args = _train_args(self.cfg, run_dir, {"imgsz": self.cfg["student"]["imgsz"], "epochs": q["epochs"]})
        freeze = self.cfg["student"]["freeze_bn"]
        key = {"student": student_pt, "data": kd_data, "args": args, "teacher": teacher, "recipe": recipe,
               "class_map": dist["class_map"], "freeze_bn": freeze, "int8": True}
        return Path(self.stages.run(
            f"quantization-aware distillation ({recipe}, {q['epochs']} epochs)", key, [run_dir / "weights" / "best.pt"],
            lambda: str(train_student(student_pt, kd_data, run_dir, args, teacher, recipe, dist["class_map"], freeze,
                                      int8=True)),
            clean=(run_dir,)))

    # --- deploy ------------------------------------------------------------------------------------------
    def export(self, weights: dict[str, Path], data: Path) -> list[tuple[str, Path, Path]]:
        """ONNX of every model, INT8 ONNX and engines of the final student: ``(name, artifact, source .pt)``."""
        from ..data.image_lists import list_images
        from ..export.onnx_export import export_onnx

        val_images = list_images(data, limit=4)
        artifacts = []
        for name, pt in weights.items():
            onnx_path = self.work / "artifacts" / f"{name.replace(', ', '-').replace(' ', '-')}.onnx"
            onnx_path.parent.mkdir(exist_ok=True)
            imgsz = self.imgsz_of(name)
            self.stages.run(f"export {name} to ONNX", {"pt": pt, "imgsz": imgsz}, [onnx_path],
                            lambda pt=pt, o=onnx_path, s=imgsz: str(export_onnx(pt, o, imgsz=s,
                                                                                 parity_images=val_images)))
            artifacts.append((f"{name} ({'INT8 Q/DQ ONNX' if name == QAD else 'FP32 ONNX'})", onnx_path, pt))
        floats = [(n, pt, a) for (n, pt), (_, a, _) in zip(weights.items(), artifacts) if n != QAD]
        final_name, final_pt, final_onnx = floats[-1]  # the distilled student, else the one without KD
        int8 = self.cfg["export"]["int8"]
        if int8 is not None:
            artifacts.append((f"{final_name} (INT8 ONNX, {int8['target']})", self.quantize(final_onnx, data, int8), final_pt))
        for precision in self.cfg["export"]["engines"] or []:
            engine = self.engine(final_onnx, data, precision)
            if engine is not None:
                artifacts.append((f"{final_name} ({precision.upper()} TensorRT)", engine, final_pt))
        return artifacts

    def quantize(self, onnx_path: Path, data: Path, int8: dict) -> Path:
        from ..export.quantize import quantize_onnx

        out = onnx_path.with_name(onnx_path.stem + "-int8.onnx")
        kwargs = {"target": int8["target"], "method": int8["method"], "num_images": int8["calib_images"]}
        if int8["max_drop"] is not None:  # the budget is checked on train images: val stays held out for the report
            limit = min(self.cfg["measure"]["eval_limit"] or BUDGET_IMAGES, BUDGET_IMAGES)
            kwargs.update(max_drop=int8["max_drop"], val_data=str(data), val_split="train", val_limit=limit)

        def run() -> dict:
            r = quantize_onnx(onnx_path, str(data), out, strict=False, **kwargs)
            return {"within_budget": r.within_budget, "drop": r.drop, "float_layers": r.float_layers}

        result = self.stages.run("quantize to INT8", {"onnx": onnx_path, "data": data, **kwargs}, [out], run)
        if isinstance(result, dict) and not result["within_budget"]:  # the best attempt was kept: say so
            self._note(f"INT8 could not meet export.int8.max_drop={int8['max_drop']}: the most accurate attempt "
                       f"(drop {result['drop']:.3f}, {len(result['float_layers'])} layers kept in float) was kept. "
                       "More calibration images, or a larger budget, may do better.")
        return out

    def engine(self, onnx_path: Path, data: Path, precision: str) -> Path | None:
        if _tensorrt_version() is None:
            self.stages.skip(f"build {precision} engine", "TensorRT is not installed here")
            self._note("TensorRT is not installed on this machine: the engine stages were skipped. Run the same "
                       "recipe on the Jetson (see deploy/jetson/README.md) to build and measure them.")
            return None
        from ..export.tensorrt_build import build_engine

        out = onnx_path.with_name(f"{onnx_path.stem}-{precision}.engine")
        calib = str(data) if precision == "int8" else None
        self.stages.run(f"build {precision} engine", {"onnx": onnx_path, "precision": precision, "data": data},
                        [out], lambda: str(build_engine(onnx_path, out, precision=precision, calib=calib)))
        return out

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # --- measurements ------------------------------------------------------------------------------------
    def measure(self, name: str, artifact: Path, source_pt: Path, data: Path) -> dict:
        from ..export.bench import bench
        from ..export.evaluate import evaluate

        m, imgsz = self.cfg["measure"], self.imgsz_of(name)

        class_map = self._teacher_class_map(source_pt, data) if name.startswith("teacher") else None

        def run() -> dict:
            acc = evaluate(artifact, data, imgsz=imgsz, limit=m["eval_limit"], class_map=class_map)
            lat = bench(artifact, data, runs=m["bench_runs"], warmup=5)
            params, gflops = model_stats(source_pt, imgsz)
            return {"map50_95": acc.map50_95, "map50": acc.map50, "latency_ms": lat.median, "params": params,
                    "gflops": gflops, "evaluator": acc.evaluator}

        result = self.stages.run(f"measure {name}", {"artifact": artifact, "data": data, "measure": m}, [artifact], run)
        self.log(f"      {name:45s} mAP50-95 {result['map50_95']:.3f}  mAP50 {result['map50']:.3f}  "
                 f"inference {result['latency_ms']['inference']:.1f} ms")
        return result

    def imgsz_of(self, name: str) -> int:
        """Input size of an artifact: the teacher's is ``imgsz``, the students' ``student.imgsz``."""
        return self.cfg["imgsz"] if name.startswith("teacher") else self.cfg["student"]["imgsz"]

    def _teacher_class_map(self, teacher: Path, data: Path) -> dict[int, int] | None:
        """How the teacher's detections count on a dataset of other classes (None: same classes)."""
        from ultralytics.data.utils import check_det_dataset

        from ..data.unlabeled import teacher_to_student
        from ..distill.classmap import resolve_class_map
        from ..distill.teacher import load_teacher
        from ..models import class_names

        names = class_names(load_teacher(teacher, fuse=False))
        cm = resolve_class_map(names, check_det_dataset(str(data)), self.cfg["distill"]["class_map"] or None)
        if cm.is_identity:
            return None
        self._note("The teacher's mAP counts its detections of the mapped classes as the dataset's classes "
                   f"({cm.describe()}); a class shared by several dataset classes counts for none.")
        return teacher_to_student(cm.sources, len(names))

    def demo(self, artifact: Path, data: Path) -> None:
        frames = self.cfg["demo"]["frames"]
        if not frames:
            return
        from ..demo.app import run_demo
        from ..data.dataset import load_dataset
        from .video import video_from_images

        def run() -> str:
            images = load_dataset(data).images("val")[:frames]
            video = video_from_images(images, self.work / "demo-input.mp4")
            summary = run_demo(artifact, str(video), show=False, record=self.work / "demo.mp4",
                               save_json=self.work / "demo.jsonl", log=lambda line: None)
            return summary.format()

        text = self.stages.run("demo (headless, on a video of the val images)", {"artifact": artifact, "frames": frames},
                               [self.work / "demo.mp4"], run)
        self._note(f"Demo ({artifact.name}, headless, recorded to demo.mp4): {' '.join(text.split())}")

    # --- all of it -------------------------------------------------------------------------------------------
    def run(self) -> Path:
        from .report import ArtifactResult, PipelineReport, TrainingRun

        cfg = self.cfg
        check_train_settings(cfg)
        self.stages.total = self._count_stages()
        data = self.data()
        teacher = self.teacher(data)
        kd_data = self.with_unlabeled(data, teacher)
        student = self.student(teacher, data)
        weights = {"teacher": teacher, **self.students(student, data, kd_data, teacher)}
        if cfg["export"]["int8"] is not None and cfg["export"]["int8"]["qad"] is not None:
            weights[QAD] = self.qad(list(weights.values())[-1], kd_data, teacher)
        artifacts = self.export(weights, data)
        results = []
        for name, artifact, source in artifacts:
            if artifact.suffix == ".engine" and self.gpu is None:
                self.stages.skip(f"measure {name}", "no GPU here")
                continue
            r = self.measure(name, artifact, source, data)
            results.append(ArtifactResult(
                name=name, kind=artifact.suffix.lstrip("."), path=artifact, size_mb=artifact.stat().st_size / 1e6,
                params=r["params"], gflops=r["gflops"], map50_95=r["map50_95"], map50=r["map50"],
                latency_ms=r["latency_ms"], backend=r.get("evaluator") or ("tensorrt" if artifact.suffix == ".engine"
                                                                            else "onnxruntime CPU"),
                imgsz=self.imgsz_of(name)))
        self.demo([a for _, a, _ in artifacts if a.suffix == ".onnx"][-1], data)
        training = [TrainingRun(n, self.work / d / "results.csv")
                    for n, d in (("student, no KD", "student-no-kd"), ("student, KD", "student-kd"), (QAD, "student-qad"))
                    if (self.work / d / "results.csv").is_file()]
        report = PipelineReport(
            title=f"detdistill pipeline: {cfg['name']}", config_text=self.recipe_text,
            machine=describe_machine(self.gpu), imgsz=cfg["imgsz"], data=str(data), artifacts=results,
            training=training, stages=self.stages.rows, notes=self.notes)
        md, html = self._write_report(report)
        self.log(f"report: {md} (and {html.name})")
        return md

    def _write_report(self, report: Any) -> tuple[Path, Path]:
        """Write report.md and report.html into a scratch folder, then move each into ``workdir`` atomically."""
        from .report import write_report

        scratch = Path(tempfile.mkdtemp(prefix=".report-", dir=self.work))
        try:
            written = write_report(report, scratch)
            for path in written:
                atomic.commit(path, self.work / path.name)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        md, html = (self.work / path.name for path in written)
        return md, html

    def _count_stages(self) -> int:
        """How many stages this run goes through (for the [n/N] progress lines)."""
        c = self.cfg
        inputs = (c["data"]["kind"] != "yaml") + (c["teacher"]["kind"] == "train") + bool(c["data"]["unlabeled"])
        inputs += c["student"]["kind"] == "prune"
        trainings = bool(c["distill"]["baseline"]) + bool(c["distill"]["recipe"])
        trainings += c["export"]["int8"] is not None and c["export"]["int8"]["qad"] is not None
        engines = len(c["export"]["engines"] or [])
        onnx = 1 + trainings + (c["export"]["int8"] is not None)
        measured = onnx + (engines if _tensorrt_version() and self.gpu else 0)
        return inputs + trainings + onnx + engines + measured + bool(c["demo"]["frames"])


def run_pipeline(recipe: str | Path | dict, workdir: Path | None = None, log: Log = print) -> Path:
    """Run a pipeline recipe; return the path of its ``report.md``."""
    cfg, text = load_pipeline(recipe)
    work = Path(workdir or cfg["workdir"] or Path("runs/pipeline") / cfg["name"])
    return Pipeline(cfg, text, work, log).run()
