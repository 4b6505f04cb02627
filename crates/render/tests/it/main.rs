//! Integration tests of `geoha-render`: the golden tree, the HA rules over the parsed
//! objects, the Bicep wiring, the workflow's shape, and (when kubectl is installed) the
//! overlays as `kubectl kustomize` builds them.

mod bicep;
mod golden;
mod kubernetes;
mod kustomize;
mod rendered;
mod workflow;
