"""Generate the documents of the tables-and-scans eval (`evals/tables-scans-dev.jsonl`)
deterministically into `evals/tables-scans/` (not in git): text and figures written for this
eval (invented, about a fictional region), no third-party text.

    PYTHONPATH=src python evals/make_tables_scans.py
    PYTHONPATH=src python -m rag.cli ingest evals/tables-scans   # with RAG_INDEX_DIR set apart
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tabledocs import docx_with_table, long_table_pdf, mixed_pdf, photo, scan_of, table_pdf, text_pdf  # noqa: E402

OUT = Path(__file__).resolve().parent / "tables-scans"

SATISFACTION = [["", "Samenwerkingsverbanden", "Gemeenten"], ["(zeer) ontevreden", "33", "23"],
                ["neutraal", "40", "39"], ["(zeer) tevreden", "27", "39"]]
WAITING = [["Vorm van hulp", "Wachttijd 2022", "Wachttijd 2023"], ["Ambulante jeugdhulp", "6", "9"],
           ["Dagbehandeling", "11", "14"], ["Pleegzorg", "8", "7"], ["Residentiële jeugdhulp", "15", "19"]]
REGIONS = [["Regio", "Leerlingen", "Thuiszitters"]] + [
    [name, str(1200 + 37 * i), str(4 + (i * 5) % 17)] for i, name in enumerate(
        ["Amstelland", "Bollenstreek", "Delfland", "Eemland", "Flevopolder", "Gooi", "Haarlemmermeer", "IJmond",
         "Kennemerland", "Lopikerwaard", "Midden-Holland", "Noordkop", "Oostzaan", "Peelland", "Rijnmond",
         "Schieland", "Twente-Noord", "Utrecht-West", "Veluwezoom", "Waterland", "Zaanstreek", "Zuidplas",
         "Achterhoek", "Betuwe", "Castricum", "Drechtsteden", "Eilanden", "Friese Wouden", "Gelderse Vallei",
         "Heuvelland", "Kempen", "Langstraat", "Maasland", "Noordoostpolder", "Oldambt", "Parkstad"], start=1)]
BUDGET = [["Post", "Begroting 2024 (in euro)", "Realisatie 2024 (in euro)"], ["Schoolmaatschappelijk werk", "420.000", "398.500"],
          ["Jeugdhulp op school", "615.000", "702.300"], ["Thuiszittersaanpak", "180.000", "171.900"],
          ["Scholing leerkrachten", "95.000", "88.250"]]
MEETING = [
    ("Verslag overleg onderwijs en jeugdhulp", [
        "Het overleg vond plaats op dinsdag 14 november in het gemeentehuis van Zeewolde.",
        "Aanwezig waren de wethouder jeugd, twee intern begeleiders en de coördinator jeugdhulp."]),
    ("Afspraken over thuiszitters", [
        "Elke school meldt een leerling die langer dan vier weken thuis zit binnen vijf werkdagen bij het samenwerkingsverband.",
        "De leerplichtambtenaar neemt binnen tien werkdagen na de melding contact op met de ouders.",
        "Voor elke thuiszitter wordt binnen zes weken een plan van aanpak opgesteld met een vaste casusregisseur."]),
    ("Vervolg en planning", [
        "Het volgende overleg is op 12 maart in het stadskantoor van Harderwijk.",
        "De coördinator stuurt de agenda uiterlijk twee weken van tevoren rond."]),
]
AGREEMENT = [("Convenant schoolmaatschappelijk werk", [
    "De gemeente financiert per school voor voortgezet onderwijs acht uur schoolmaatschappelijk werk per week.",
    "De school zorgt voor een vaste werkplek en een contactpersoon uit het zorgteam.",
    "Het convenant geldt voor drie schooljaren en wordt na twee jaar geëvalueerd."])]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    intro = ["Dit rapport beschrijft de samenwerking tussen onderwijs en jeugdhulp in de regio Zeeweide."]
    (OUT / "rapport-tevredenheid.pdf").write_bytes(table_pdf(
        SATISFACTION, "Tabel 1. Tevredenheid over de samenwerking (in procenten)", intro,
        ["Gemeenten zijn vaker tevreden dan samenwerkingsverbanden."], ruled=True,
        title="Monitor samenwerking onderwijs en jeugdhulp Zeeweide"))
    (OUT / "rapport-wachttijden.pdf").write_bytes(table_pdf(
        WAITING, "Tabel 2. Gemiddelde wachttijd in weken", ["De wachttijden voor jeugdhulp zijn in 2023 opgelopen."],
        ["Alleen bij pleegzorg daalde de wachttijd."], ruled=False, title="Wachttijden jeugdhulp Zeeweide"))
    (OUT / "rapport-thuiszitters.pdf").write_bytes(long_table_pdf(
        REGIONS, "Tabel 3. Leerlingen en thuiszitters per regio", intro * 10, "Thuiszitters per regio"))
    docx_with_table(OUT / "begroting-2024.docx", BUDGET, "Tabel 4. Begroting en realisatie 2024",
                    "De begroting van het samenwerkingsverband voor 2024 is grotendeels uitgevoerd.",
                    "De overschrijding bij jeugdhulp op school komt door extra inzet in het voortgezet onderwijs.")
    source = text_pdf(MEETING)
    (OUT / "verslag-overleg.pdf").write_bytes(mixed_pdf(source, {2: scan_of(source, 2, dpi=150, seed=2)}))
    photo(scan_of(text_pdf(AGREEMENT), 1, dpi=200, seed=7), angle=2.5, seed=7).save(OUT / "convenant-foto.png")
    print(f"wrote {len(list(OUT.iterdir()))} documents to {OUT}")


if __name__ == "__main__":
    main()
