//! Consumer processors of oda-cdc topics on one shared runner (SPEC §8–§9).
//! Built on [`oda_cdc_core`]; the runner lands with its own issue.
