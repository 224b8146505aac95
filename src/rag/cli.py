"""`rag` command line: ingest | worker | search | ask | chat | eval | bench."""

from __future__ import annotations

import json
import logging
import os
import sys
from functools import wraps
from pathlib import Path

import click

from .config import MAX_K, Settings, unknown_settings
from .display import PrintableFilter, json_printable, printable
from .errors import RagError


def _settings(**overrides) -> Settings:
    try:
        return Settings().with_overrides(**overrides)
    except Exception as exc:  # pydantic ValidationError: name the setting
        raise click.UsageError(printable(f"Invalid setting: {exc}".splitlines()[0] + " " + _first_error(exc))) from exc


def _first_error(exc) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"(RAG_{str(first['loc'][0]).upper()}: {first['msg']})"
    return ""


def handle_errors(func):
    """Turn user-caused errors into one line on stderr and the right exit code."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except RagError as exc:
            click.echo(f"Error: {printable(exc)}", err=True)
            sys.exit(exc.exit_code)

    return wrapper


def _out(data) -> None:
    click.echo(json_printable(json.dumps(data, ensure_ascii=False)))


class LazyGroup(click.Group):
    """A click group whose heavier subcommands (eval, bench) are imported only when they run.

    `rag ask` and `rag search` then pay for neither the evaluation code nor the bench."""

    def __init__(self, *args, lazy_subcommands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = dict(lazy_subcommands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_subcommands})

    def get_command(self, ctx: click.Context, cmd_name: str):
        if cmd_name in self.lazy_subcommands and cmd_name not in self.commands:
            from importlib import import_module

            module, _, attr = self.lazy_subcommands[cmd_name].partition(":")
            self.add_command(getattr(import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, lazy_subcommands={"eval": "rag.evaluation:eval_command", "bench": "rag.bench:bench_command"})
@click.option("-v", "--verbose", is_flag=True, help="Show debug logging.")
@click.version_option(package_name="onderwijs-jeugdhulp-rag")
def main(verbose: bool) -> None:
    """Ask cited questions about Oberon's research on onderwijs and jeugdhulp."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # file names in log messages: no raw control characters
        if not any(isinstance(f, PrintableFilter) for f in handler.filters):
            handler.addFilter(PrintableFilter())
    for warning in unknown_settings(os.environ):
        click.echo(f"Warning: {printable(warning)}.", err=True)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--rebuild", is_flag=True, help="Delete the index and build it from scratch.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@handle_errors
def ingest(paths: tuple[Path, ...], rebuild: bool, as_json: bool) -> None:
    """Index the documents in PATHS (default: the corpus folder, RAG_CORPUS_DIR)."""
    from tqdm import tqdm

    from . import access
    from .store import Index

    settings = _settings()
    index = Index(settings)
    bars: dict[str, tqdm] = {}
    units = {"files": "file", "pages": "page", "embedding": "chunk", "lines": "chunk"}
    labels = {"files": "Reading", "embedding": "Embedding", "lines": "Answer lines"}

    def on_event(stage: str, done: int, total: int, name: str) -> None:
        if stage not in units:  # "searchable", "ready": a document committed, no bar of its own
            return
        bar = bars.get(stage)
        if bar is None or bar.total != total or (stage == "pages" and bar.desc != name):
            if bar is not None:
                bar.close()
            desc = printable(name) if stage == "pages" else labels[stage]
            bar = bars[stage] = tqdm(
                total=total, desc=desc, unit=units[stage], file=sys.stderr, leave=stage != "pages",
                position=1 if stage == "pages" else 0,
            )
        if stage == "files" and name:
            bar.set_postfix_str(printable(name), refresh=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            del bars[stage]

    # Progress on stderr unless --json (a log file gets the bars too: a long ingest shows it is alive).
    show = not as_json
    before = _catalog(index)
    kept_log = _change_log_entries(settings) if rebuild and before else []
    try:
        report = index.ingest(list(paths) or None, rebuild=rebuild, on_event=on_event if show else None,
                              added_by=access.os_actor().who)
    finally:
        for bar in bars.values():
            bar.close()
    _record_changes(settings, before, index.documents(), report, kept_log)
    if as_json:
        _out(report.as_json())
    else:
        for item in report.skipped:
            click.echo(f"skipped {printable(item['path'])}: {printable(item['reason'])}", err=True)
        for item in report.notes:
            click.echo(f"not read in {printable(item['path'])}: {printable(item['reason'])}", err=True)
        for item in report.replaced:
            click.echo(f"replaced {printable(item['doc_id'])} with the new content of {printable(item['path'])}", err=True)
        for warning in report.warnings:
            click.echo(f"warning: {printable(warning)}", err=True)
        click.echo(
            f"{report.documents} documents, {report.chunks_total} chunks in {printable(index.where)} "
            f"(added {report.added}, removed {report.removed}, replaced documents {len(report.replaced)}, "
            f"unchanged documents {report.unchanged}, skipped files {len(report.skipped)}) in {report.seconds:.1f}s"
        )
    if report.documents == 0:
        sys.exit(1)


@main.command()
@handle_errors
def migrate() -> None:
    """Move an index built before the store lived in Chroma (RAG_INDEX_DIR/catalog.sqlite) into Chroma."""
    from .store import Index

    index = Index(_settings())
    message = index.migrate()
    click.echo(printable(message) if message else f"Nothing to migrate: {printable(index.where)} has no older catalog.")


def _catalog(index) -> list[dict]:
    """The documents in the index, or none when it is missing or damaged (the ingest then says why)."""
    try:
        return index.documents()
    except Exception:  # noqa: BLE001 - a damaged catalog is the ingest's to report (or --rebuild's to fix)
        return []


def _change_log_entries(settings: Settings) -> list:
    """The change log before a rebuild (an embedded index keeps it in the folder a rebuild deletes)."""
    from . import changelog

    try:
        return changelog.export(settings)
    except Exception as exc:  # noqa: BLE001 - no log yet, or Chroma unreachable: the ingest says so itself
        logging.getLogger(__name__).debug("could not read the change log: %s", exc)
        return []


def _record_changes(settings: Settings, before: list[dict], after: list[dict], report, kept_log: list) -> None:
    """Record what `rag ingest` changed in the change log, as the operating-system user."""
    from . import access, changelog

    try:
        if kept_log:
            changelog.restore(settings, kept_log)
        changelog.record_ingest(settings, access.os_actor(), before, after, report, "rag ingest")
    except Exception as exc:  # noqa: BLE001 - the index is updated; say the log is not, in one line
        click.echo(f"Warning: the change was made but could not be recorded in the change log "
                   f"({printable(exc.__class__.__name__)}).", err=True)


@main.command()
@click.option("--once", is_flag=True, help="Process the jobs waiting now, then exit.")
@click.option("--exit-with", type=int, default=None, hidden=True, help="Exit when this process id is gone (the app that started the worker).")
@handle_errors
def worker(once: bool, exit_with: int | None) -> None:
    """Ingest uploaded files from the job queue (RAG_JOBS_DIR), at lower priority than questions."""
    from .ingest.worker import run_worker

    logging.getLogger("rag").setLevel(logging.INFO)
    settings = _settings()
    if run_worker(settings, once=once, exit_with=exit_with) == 3:
        click.echo("Another worker already serves this job queue on this machine; nothing to do.", err=True)


def _question(text: str, settings: Settings) -> str:
    from .answering import validate_question

    try:
        return validate_question(text, settings.max_question_chars)
    except RagError as exc:
        raise click.UsageError(str(exc)) from exc


@main.command()
@click.argument("question")
@click.option("-k", "k", type=click.IntRange(1, MAX_K), default=None, help="Number of passages (default RAG_K).")
@click.option("--mode", type=click.Choice(["hybrid", "dense", "lexical"]), default=None, help="Retrieval mode.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@handle_errors
def search(question: str, k: int | None, mode: str | None, as_json: bool) -> None:
    """Show the passages that best match QUESTION."""
    from .identity import doc_name
    from .retrieval import HybridSearcher
    from .store import Index

    settings = _settings(k=k)
    question = _question(question, settings)
    searcher = HybridSearcher(Index(settings).open(), settings)
    passages = searcher.search(question, settings.k, mode)
    if as_json:
        _out(
            {
                "query": question,
                "passages": [
                    {"rank": i, "chunk_id": p.chunk_id, "doc_id": p.doc_id, "name": doc_name(p.doc_id), "title": p.title,
                     "section": p.section,
                     "page": p.page, "text": p.text, "score": p.score}
                    for i, p in enumerate(passages, start=1)
                ],
            }
        )
        return
    if not passages:
        click.echo("No passages found.")
    for i, p in enumerate(passages, start=1):
        page = f", p. {p.page}" if p.page else ""
        dense = f"{p.dense_score:.3f}" if p.dense_score is not None else "-"
        lexical = f"{p.lexical_score:.2f}" if p.lexical_score is not None else "-"
        click.echo(click.style(f"[{i}] {printable(p.title)}{page}", bold=True) + f"  score {p.score:.4f} (dense {dense}, bm25 {lexical})")
        click.echo(f"    {printable(p.section)}")
        for line in p.text.splitlines():
            click.echo(f"    {printable(line)}")
        click.echo()


def _print_answer(answer) -> None:
    style = {"fg": "yellow"} if answer.refused else {}
    click.echo(click.style("\n".join(printable(line) for line in answer.text.split("\n")), **style))
    if answer.condensed_question:
        click.echo(click.style(f"(gezocht op: {answer.condensed_question})", dim=True))
    for note in answer.notes:
        click.echo(click.style(f"Let op: {note}", fg="cyan"))
    if answer.citations:
        click.echo("\nBronnen:")
        for c in answer.citations:
            page = f", p. {c.passage.page}" if c.passage.page else ""
            click.echo(f"  [{c.n}] {printable(c.passage.title)}{page} — {printable(c.passage.section)}")
    elif answer.refused and answer.passages:
        click.echo("\nMisschien relevant:")
        for p in answer.passages[:3]:
            click.echo(f"  - {printable(p.title)} — {printable(p.section)}: {printable(p.text.splitlines()[0][:100])}")


def _assistant(settings: Settings):
    from .answering import Assistant

    return Assistant(settings)


@main.command()
@click.argument("question")
@click.option("-k", "k", type=click.IntRange(1, MAX_K), default=None, help="Number of passages (default RAG_K).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@handle_errors
def ask(question: str, k: int | None, as_json: bool) -> None:
    """Answer QUESTION with cited passages (extractive unless RAG_LLM is set)."""
    from .embeddings import quick_start_name

    settings = _settings(k=k)
    settings = settings.with_overrides(embed_model=quick_start_name(settings.embed_model))
    question = _question(question, settings)
    answer = _assistant(settings).ask(question, k=settings.k)
    if as_json:
        _out(answer.as_json())
    else:
        _print_answer(answer)


@main.command()
@click.option("-k", "k", type=click.IntRange(1, MAX_K), default=None, help="Number of passages (default RAG_K).")
@handle_errors
def chat(k: int | None) -> None:
    """A terminal conversation with follow-up questions (empty line or Ctrl-D to stop)."""
    from .errors import QuestionError

    settings = _settings(k=k)
    assistant = _assistant(settings)
    history: list[dict] = []
    click.echo("Stel een vraag over onderwijs en jeugdhulp (lege regel of Ctrl-D om te stoppen).")
    while True:
        try:
            question = click.prompt("\nVraag", default="", show_default=False)
        except (EOFError, click.Abort):
            break
        if not question.strip():
            break
        try:
            answer = assistant.ask(question, history, k=settings.k)
        except QuestionError as exc:
            click.echo(str(exc), err=True)
            continue
        _print_answer(answer)
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": answer.text}]


def _dataset_pairs(pairs: tuple[str, ...], at_least: int = 1) -> list[tuple[Path, Path]]:
    if len(pairs) < at_least:
        raise click.UsageError(f"give at least {at_least} --dataset pairs: each tuning file is held out in turn.")
    parsed = []
    for pair in pairs:
        dataset, sep, corpus = pair.partition("=")
        if not sep or not dataset or not corpus:
            raise click.UsageError(f"--dataset takes DATASET=CORPUS, got '{pair}'.")
        parsed.append((Path(dataset), Path(corpus)))
    return parsed


_DATASET_OPTION = click.option(
    "--dataset", "pairs", multiple=True, required=True, metavar="DATASET=CORPUS",
    help="A tuning dataset (JSONL) and the corpus folder its questions are about; repeat for more.",
)
_WORK_DIR_OPTION = click.option(
    "--work-dir", type=click.Path(path_type=Path), default=Path(".rag-fit"), show_default=True,
    help="Where the tuning corpora are indexed (incrementally).",
)


@main.command("fit-fusion")
@_DATASET_OPTION
@_WORK_DIR_OPTION
@handle_errors
def fit_fusion_command(pairs: tuple[str, ...], work_dir: Path) -> None:
    """Fit how dense, BM25 and best-line rankings are fused, on tuning cases."""
    from .fusion_fit import fit_fusion

    _echo_fusion(fit_fusion(_dataset_pairs(pairs), _settings(), work_dir))


def _echo_fusion(result: dict) -> None:
    fit = result["fit"]
    ranked_by = "the passage ranker" if result["method"] == "ranker" else f"reciprocal-rank fusion {result['weights']}"
    click.echo(f"Fusion: {ranked_by}, context recall {fit['context_recall']:.3f} on {fit['cases']} cases "
               f"(dense only {fit['dense_only_context_recall']:.3f})")
    click.echo(f"  {'':28s} context recall: ranker (held out) / RRF / dense only; first passage holds a fact: ranker / RRF")
    for name, rrf in fit["rrf_context_recall_per_dataset"].items():
        click.echo(f"  {name:28s} {fit['ranker_out_of_fold_context_recall_per_dataset'][name]:.3f} / {rrf:.3f} / "
                   f"{fit['dense_only_context_recall_per_dataset'][name]:.3f}; "
                   f"{fit['ranker_out_of_fold_first_passage_hits_per_dataset'][name]:.3f} / "
                   f"{fit['rrf_first_passage_hits_per_dataset'][name]:.3f}")


@main.command("fit")
@_DATASET_OPTION
@_WORK_DIR_OPTION
@handle_errors
def fit_all_command(pairs: tuple[str, ...], work_dir: Path) -> None:
    """Refit everything learned, in order: fusion, reader, refusal (each step uses the one before)."""
    from .answering.reader_fit import fit_reader
    from .answering.refusal_fit import fit_refusal
    from .fusion_fit import fit_fusion

    parsed, settings = _dataset_pairs(pairs, at_least=2), _settings()
    _echo_fusion(fit_fusion(parsed, settings, work_dir))
    _echo_reader(fit_reader(parsed, settings, work_dir))
    _echo_refusal(fit_refusal(parsed, settings, work_dir))


@main.command("fit-reader")
@_DATASET_OPTION
@_WORK_DIR_OPTION
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Model JSON to write (default: the packaged one).")
@handle_errors
def fit_reader_command(pairs: tuple[str, ...], work_dir: Path, out: Path | None) -> None:
    """Fit the learned line reader on tuning cases (never on the dev splits you report)."""
    from .answering.reader import MODEL_PATH
    from .answering.reader_fit import fit_reader

    _echo_reader(fit_reader(_dataset_pairs(pairs, at_least=2), _settings(), work_dir, out or MODEL_PATH), out or MODEL_PATH)


def _echo_reader(model: dict, out: Path | None = None) -> None:
    fit = model["fit"]
    click.echo(
        f"Fit on {fit['questions']} questions ({fit['positive_pairs']} positive of {fit['candidate_lines']} lines; "
        f"hidden {fit['hidden']}, penalty {fit['penalty']}): out-of-fold recall@1 {fit['out_of_fold_recall_at_1']:.3f} "
        f"(cosine alone {fit.get('cosine_recall_at_1', float('nan')):.3f}), "
        f"fact recall {fit['out_of_fold_fact_recall']:.3f} at {fit['out_of_fold_answer_chars']:.0f} characters; "
        f"selection {model['selection']}" + (f"; wrote {out}" if out else "")
    )
    for name, recall in fit["out_of_fold_recall_at_1_per_dataset"].items():
        click.echo(f"  {name:28s} recall@1 {recall:.3f}")
    for name, coef in zip(model["features"], model["coef"]):
        click.echo(f"  {name:18s} {coef:+.3f}")


@main.command("fit-refusal")
@_DATASET_OPTION
@_WORK_DIR_OPTION
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Model JSON to write (default: the packaged one).")
@handle_errors
def fit_refusal_command(pairs: tuple[str, ...], work_dir: Path, out: Path | None) -> None:
    """Fit the refusal model on tuning cases (never on the dev splits you report)."""
    from .answering.refusal import MODEL_PATH
    from .answering.refusal_fit import fit_refusal

    _echo_refusal(fit_refusal(_dataset_pairs(pairs), _settings(), work_dir, out or MODEL_PATH), out or MODEL_PATH)


def _echo_refusal(model: dict, out: Path | None = None) -> None:
    fit = model["fit"]
    click.echo(
        f"Refusal fit on {fit['cases']} cases ({fit['answerable']} answerable): out-of-fold accuracy "
        f"{fit['out_of_fold_accuracy']:.3f} at threshold {model['threshold']:.3f}" + (f"; wrote {out}" if out else "")
    )
    for name, coef in zip(model["features"], model["coef"]):
        click.echo(f"  {name:18s} {coef:+.3f}")


if __name__ == "__main__":
    main()
