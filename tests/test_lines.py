"""Answer lines (rag.lines): cut once at ingest, stored with their vectors, values paired with labels."""

from __future__ import annotations

import numpy as np
from conftest import store_contents

from rag.lines import embed_text, split_lines


def test_value_panel_takes_its_labels():
    text = "Samenwerkingsverbanden: 33% 40% 27%\n(zeer) ontevreden\nneutraal\n(zeer) tevreden"
    lines = split_lines(text)
    assert [ln.text for ln in lines] == ["Samenwerkingsverbanden: 33% (zeer) ontevreden; 40% neutraal; 27% (zeer) tevreden"]


def test_unlabelled_panel_borrows_the_labels_of_the_panel_before_it():
    text = "Scholen: 10 20\nja\nnee\nOuders: 30 40"
    assert split_lines(text)[1].text == "Ouders: 30 ja; 40 nee"


def test_panel_with_another_number_of_values_borrows_nothing():
    text = "Scholen: 10 20\nja\nnee\nOuders: 30 40 50"
    assert split_lines(text)[1].text == "Ouders: 30 40 50"


def test_inline_label_value_pairs_label_the_next_panels():
    text = "SCHOTTEN: Samenwerkingsverbanden 15% Gemeenten 10%\nKETENS: 40% 44%"
    lines = split_lines(text)
    assert lines[0].text == "SCHOTTEN: Samenwerkingsverbanden 15% Gemeenten 10%"
    assert lines[1].text == "KETENS: 40% Samenwerkingsverbanden; 44% Gemeenten"


def test_list_items_lose_their_marks_and_are_flagged():
    lines = split_lines("Vijf factoren:\n- ✓ gedeelde visie\n– onderling vertrouwen\n2. borging")
    assert [(ln.text, ln.is_item) for ln in lines] == [
        ("Vijf factoren:", False), ("gedeelde visie", True), ("onderling vertrouwen", True), ("borging", True)]
    assert [ln.position for ln in lines] == [0, 1, 2, 3]


def test_ordinary_lines_with_numbers_are_left_alone():
    text = "In 2018 waren er 200 pilots.\nDat is veel."
    assert [ln.text for ln in split_lines(text)] == ["In 2018 waren er 200 pilots.", "Dat is veel."]


def test_embed_text_carries_the_headings_below_the_document_root():
    line = split_lines("Gemeenten: 23% 39% 39%")[0]
    assert embed_text("Factsheet › Beleving › Gemeenten", line) == "Beleving › Gemeenten: Gemeenten: 23% 39% 39%"
    assert embed_text("Factsheet", line) == "Gemeenten: 23% 39% 39%"


def test_ingest_stores_every_chunk_s_lines_with_unit_vectors(corpus_index):
    _, index = corpus_index
    ids = store_contents(index.settings)["catalog"]
    stored = index.lines_for(ids)
    assert set(stored) == set(ids)
    for chunk_id, (lines, vectors) in stored.items():
        assert len(lines) == len(vectors) >= 1
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=2e-3)


def test_a_changed_document_replaces_its_lines_and_a_removed_one_drops_them(make_index):
    settings, index = make_index()
    before = len(store_contents(settings)["lines"])
    factsheet = settings.corpus_dir / "factsheet-2021.md"
    factsheet.write_text(factsheet.read_text(encoding="utf-8") + "\n\nNieuwe slotzin over toezicht.\n", encoding="utf-8")
    index.ingest()
    texts = {text for _, text in store_contents(settings)["lines"].values()}
    assert "Nieuwe slotzin over toezicht." in texts
    factsheet.unlink()
    index.ingest()
    after = store_contents(settings)
    assert all(cid in after["catalog"] for cid, _ in after["lines"].values())  # no orphans
    assert 0 < len(after["lines"]) < before
