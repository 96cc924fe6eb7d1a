"""Datasets, model versions and aliases.

A model version is immutable: registering again makes a new version (numbers go up per name,
allocated inside the inserting transaction and retried on a race), and no function here
updates one. Aliases are the movable part: moving one writes the pointer and an `AliasEvent`
in one transaction, so the log and the pointer never disagree.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from dsft.errors import UserError
from dsft.home import dsft_home, relative_to_home
from dsft.registry import db
from dsft.registry.schema import Alias, AliasEvent, Dataset, ModelVersion, now

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def check_name(name: str, what: str = "model name") -> str:
    if not name or len(name) > 128 or not set(name) <= NAME_CHARS or name[0] in "-.":
        raise UserError(f"invalid {what} {name!r}", "use letters, digits, '-', '_' and '.', up to 128 characters")
    return name


# ---------------------------------------------------------------- hashing

def sha256_files(paths: list[Path]) -> str:
    """One digest over several files (name and bytes, in the given order)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as f:
            while block := f.read(8 << 20):
                h.update(block)
    return h.hexdigest()


def artifact_files(folder: Path) -> tuple[str, list[Path]]:
    """("adapter" | "full", the weight files) of a run folder; safetensors only."""
    if (folder / "adapter_config.json").exists():
        files = sorted(folder.glob("adapter_model*.safetensors"))
        kind = "adapter"
    else:
        files = sorted(p for p in folder.glob("*.safetensors"))
        kind = "full"
    if not files:
        pickles = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt"))
        why = f"it holds pickle weights ({', '.join(pickles)}), which dsft never loads" if pickles else "it holds none"
        raise UserError(f"{folder} has no safetensors weights: {why}", "save the model with safe_serialization=True")
    return kind, files


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def template_hash(folder: Path) -> str | None:
    """The chat format the model was trained in, as saved beside it: dsft's family and its options
    (what training rendered with) and the template exports carry. Either changing changes it."""
    cfg = folder / "tokenizer_config.json"
    saved = json.loads(cfg.read_text(encoding="utf-8")) if cfg.exists() else {}
    jinja = folder / "chat_template.jinja"
    template = jinja.read_text(encoding="utf-8") if jinja.exists() else saved.get("chat_template")
    family = {k: saved[k] for k in ("chat_family", "chat_options") if k in saved}
    if not template and not family:
        return None
    if not family:  # as hashed before dsft recorded families: registered versions keep their hash
        return (hashlib.sha256(jinja.read_bytes()).hexdigest() if jinja.exists()
                else hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest())
    return hashlib.sha256(json.dumps({"template": template, **family}, sort_keys=True).encode()).hexdigest()


def base_hash(base: str) -> str | None:
    """A local base model's identity: its config and weights hashed (cached by path, size and mtime)."""
    folder = Path(base)
    if not folder.is_dir():
        return None  # a hub id: the id (and revision, when the config names one) is the identity
    files = [folder / "config.json", *sorted(folder.glob("*.safetensors"))]
    files = [f for f in files if f.exists()]
    key = hashlib.sha256(json.dumps([[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files])
                         .encode()).hexdigest()
    cache = dsft_home() / "cache" / "base-hashes.json"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    if key not in known:
        known[key] = sha256_files(files)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{id(known)}.tmp")
        tmp.write_text(json.dumps(known))
        tmp.replace(cache)
    return known[key]


# ---------------------------------------------------------------- datasets

def add_dataset(s, dataset_dir: Path, report: dict[str, Any], job_id: str | None = None) -> Dataset:
    """Record a prepared dataset (idempotent: the id is its content hash)."""
    ds = s.get(Dataset, report["dataset_id"])
    if ds is None:
        ds = Dataset(id=report["dataset_id"], path=relative_to_home(dataset_dir), counts=report["counts"],
                     report=report, job_id=job_id)
        s.add(ds)
    return ds


def dataset_dict(ds: Dataset) -> dict[str, Any]:
    return {"id": ds.id, "path": ds.path, "counts": ds.counts, "job_id": ds.job_id, "created": ds.created.isoformat()}


# ---------------------------------------------------------------- model versions

@dataclass
class Registration:
    name: str
    run: Path  # the run folder (adapter or full model) to register
    base_model: str | None = None  # read from the run's config.yaml when not given
    dataset_id: str | None = None
    metrics: dict[str, Any] | None = None
    job_id: str | None = None
    description: str = ""


def register(reg: Registration, url: str | None = None) -> ModelVersion:
    check_name(reg.name)
    run = reg.run
    if not run.is_dir():
        raise UserError(f"run folder {run} does not exist", "give a finished run (it holds config.yaml and weights)")
    kind, files = artifact_files(run)
    cfg_file = run / "config.yaml"
    import yaml

    config = yaml.safe_load(cfg_file.read_text(encoding="utf-8")) if cfg_file.exists() else {}
    base = reg.base_model or (config.get("model") or {}).get("name_or_path")
    if not base:
        raise UserError(f"{run} does not say its base model", "pass base_model")
    metrics = dict(reg.metrics or {})
    run_json = run / "run.json"
    if run_json.exists():
        facts = json.loads(run_json.read_text(encoding="utf-8"))
        metrics.setdefault("train_loss", facts.get("train_loss"))
        metrics.setdefault("eval_loss", facts.get("eval_loss"))
    fields = dict(name=reg.name, base_model=base, base_hash=base_hash(base), artifact=relative_to_home(run),
                  artifact_sha256=sha256_files(files), kind=kind, dataset_id=reg.dataset_id, config=config,
                  config_hash=config_hash(config), template_hash=template_hash(run), metrics=metrics,
                  job_id=reg.job_id, description=reg.description)
    for _ in range(20):  # another registration of the same name may take the number first
        try:
            with db.session(url) as s:
                latest = s.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.name == reg.name))
                mv = ModelVersion(version=(latest or 0) + 1, **fields)
                s.add(mv)
            return mv
        except IntegrityError:
            continue
    raise RuntimeError(f"could not allocate a version number for {reg.name}")


SKIPPED_ON_IMPORT = ("checkpoints", "best")  # resume state: large, and a registered version never resumes


def import_run(run: Path, name: str, link: bool = False) -> Path:
    """A finished run from anywhere on disk, brought into DSFT_HOME so the registry (and the API's
    path rule) can reach it: copied (without its checkpoints) to `models/registered/NAME/<hash>`,
    or linked there with `link` (then the run must stay where it is). A run already inside the home
    stays in place; copying the same run twice gives the same folder."""
    import shutil

    run = run.resolve()
    if not (run / "config.yaml").is_file():
        raise UserError(f"{run} is not a dsft run folder (no config.yaml)", "give the --out of a `dsft train` run")
    if not (run / "run.json").is_file():
        raise UserError(f"{run} is not finished (no run.json)", f"finish it first: `dsft train --resume {run}`")
    home = dsft_home().resolve()
    if run == home or home in run.parents:
        return run
    _, files = artifact_files(run)
    dest = home / "models" / "registered" / check_name(name) / sha256_files(files)[:16]
    if dest.is_symlink() or dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if link:
        dest.symlink_to(run, target_is_directory=True)
        return dest
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(run, tmp, ignore=lambda folder, names: [n for n in names if Path(folder) == run
                                                              and n in SKIPPED_ON_IMPORT])
    tmp.rename(dest)
    return dest


def dataset_of_run(s, run: Path) -> str | None:
    """The id of the prepared dataset a run trained on (its `data.train` is a `data prepare` folder's
    train.jsonl, beside that folder's report.json), recorded in the registry if it was not yet."""
    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
    for path in (config.get("data") or {}).get("train") or []:
        report = Path(path).parent / "report.json"
        if Path(path).name != "train.jsonl" or not report.is_file():
            continue
        facts = json.loads(report.read_text(encoding="utf-8"))
        if facts.get("dataset_id") and facts.get("counts") is not None:
            return add_dataset(s, report.parent, facts).id
    return None


def resolve(s, ref: str) -> ModelVersion:
    """NAME@ALIAS, NAME:VERSION or NAME (its newest version)."""
    name, alias, version = ref, None, None
    if "@" in ref:
        name, alias = ref.split("@", 1)
    elif ":" in ref:
        name, raw = ref.split(":", 1)
        if not raw.isdigit():
            raise UserError(f"version {raw!r} in {ref!r} is not a number", "use NAME:VERSION, e.g. lightdom:3")
        version = int(raw)
    if alias is not None:
        row = s.get(Alias, (name, alias))
        if row is None:
            raise UserError(f"{name} has no alias {alias!r}", f"set it with `dsft models alias {name} {alias} VERSION`",
                            exit_code=1)
        version = row.version
    q = select(ModelVersion).where(ModelVersion.name == name)
    q = q.where(ModelVersion.version == version) if version is not None else q.order_by(ModelVersion.version.desc())
    mv = s.scalars(q.limit(1)).first()
    if mv is None:
        raise UserError(f"no model version {ref!r}", "see `dsft models list`", exit_code=1)
    return mv


def set_alias(name: str, alias: str, version: int | None, reason: str = "", url: str | None = None) -> AliasEvent:
    """Point `alias` at `version` (None deletes it); the pointer and its log entry in one transaction."""
    check_name(alias, "alias")
    with db.session(url) as s:
        if version is not None and s.scalar(select(ModelVersion.id).where(
                ModelVersion.name == name, ModelVersion.version == version)) is None:
            raise UserError(f"{name} has no version {version}", "see `dsft models show NAME`", exit_code=1)
        row = s.get(Alias, (name, alias), with_for_update=True)
        old = row.version if row else None
        if version is None:
            if row is not None:
                s.delete(row)
        elif row is None:
            s.add(Alias(name=name, alias=alias, version=version))
        else:
            row.version, row.updated = version, now()
        ev = AliasEvent(name=name, alias=alias, old_version=old, new_version=version, reason=reason)
        s.add(ev)
    return ev


def aliases_of(s, name: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for a in s.scalars(select(Alias).where(Alias.name == name).order_by(Alias.alias)):
        out.setdefault(a.version, []).append(a.alias)
    return out


def version_dict(mv: ModelVersion, aliases: list[str] | None = None) -> dict[str, Any]:
    return {"name": mv.name, "version": mv.version, "ref": f"{mv.name}:{mv.version}", "aliases": aliases or [],
            "kind": mv.kind, "base_model": mv.base_model, "base_hash": mv.base_hash, "artifact": mv.artifact,
            "artifact_sha256": mv.artifact_sha256, "dataset_id": mv.dataset_id, "config_hash": mv.config_hash,
            "template_hash": mv.template_hash, "metrics": mv.metrics, "job_id": mv.job_id,
            "description": mv.description, "created": mv.created.isoformat()}


def list_models(s) -> list[dict[str, Any]]:
    out = []
    names = s.scalars(select(ModelVersion.name).distinct().order_by(ModelVersion.name)).all()
    for name in names:
        latest = resolve(s, name)
        aliases = aliases_of(s, name)
        out.append({"name": name, "latest": latest.version,
                    "versions": s.scalar(select(func.count()).where(ModelVersion.name == name)),
                    "aliases": {a: v for v, names_ in aliases.items() for a in names_},
                    "created": latest.created.isoformat()})
    return out


def versions(s, name: str) -> list[dict[str, Any]]:
    aliases = aliases_of(s, name)
    rows = s.scalars(select(ModelVersion).where(ModelVersion.name == name).order_by(ModelVersion.version)).all()
    if not rows:
        raise UserError(f"no model named {name!r}", "see `dsft models list`", exit_code=1)
    return [version_dict(mv, aliases.get(mv.version)) for mv in rows]


def alias_log(s, name: str) -> list[dict[str, Any]]:
    rows = s.scalars(select(AliasEvent).where(AliasEvent.name == name).order_by(AliasEvent.id)).all()
    return [{"alias": e.alias, "from": e.old_version, "to": e.new_version, "reason": e.reason,
             "at": e.created.isoformat()} for e in rows]


def diff(a: ModelVersion, b: ModelVersion, datasets: dict[str, Dataset] | None = None) -> dict[str, Any]:
    """What differs between two versions: config keys, data, metrics."""
    from dsft.train.config import _flatten

    fa, fb = _flatten(a.config or {}), _flatten(b.config or {})
    config = {k: [fa.get(k), fb.get(k)] for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}
    metrics = {}
    for k in sorted(set(a.metrics) | set(b.metrics)):
        va, vb = a.metrics.get(k), b.metrics.get(k)
        if va != vb:
            delta = vb - va if isinstance(va, int | float) and isinstance(vb, int | float) else None
            metrics[k] = {"a": va, "b": vb, "delta": delta}
    data: dict[str, Any] = {"a": a.dataset_id, "b": b.dataset_id, "same": a.dataset_id == b.dataset_id}
    if datasets:
        for side, ds_id in (("a_counts", a.dataset_id), ("b_counts", b.dataset_id)):
            if ds_id in datasets:
                data[side] = datasets[ds_id].counts
    return {"a": f"{a.name}:{a.version}", "b": f"{b.name}:{b.version}", "config": config, "data": data,
            "metrics": metrics, "base": [a.base_model, b.base_model] if a.base_model != b.base_model else None,
            "template_changed": a.template_hash != b.template_hash}
