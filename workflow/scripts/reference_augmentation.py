"""Snakemake entry point: the reference methods under each reference setting (table and figure)."""
from stbench.atomic import write_csv, write_text
from stbench.data.reference_generators.report import augmentation_figure, augmentation_table, to_markdown
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    df = augmentation_table(list(snakemake.input), snakemake.params.variants, snakemake.params.settings)
    write_csv(snakemake.output.csv, df, index=False)
    write_text(snakemake.output.md, "# Reference methods under each reference setting\n\n" + to_markdown(df))
    augmentation_figure(df, snakemake.output.png)
