//! The workflow builds once, pushes by digest, and deploys region by region behind a
//! health gate with OIDC credentials and a production environment.

use serde_json::Value;

use crate::rendered::{all_renderings, at, str_at, yaml};

const PATH: &str = "github/workflows/deploy.yml";

fn steps_text(job: &Value) -> Vec<String> {
    at(job, "steps")
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["uses"].as_str().unwrap_or(""),
                s["run"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn position(steps: &[String], needle: &str) -> usize {
    steps
        .iter()
        .position(|s| s.contains(needle))
        .unwrap_or_else(|| panic!("no step with {needle:?} in {steps:#?}"))
}

#[test]
fn build_once_push_capture_the_digest_and_render_with_it() {
    for (_, tree) in all_renderings() {
        let wf = yaml(&tree, PATH);
        assert!(at(&wf, "on.push").is_object());
        assert_eq!(
            at(&wf, "permissions"),
            &serde_json::json!({"contents": "read"})
        );
        let build = at(&wf, "jobs.build");
        assert_eq!(str_at(build, "permissions.id-token"), "write");
        assert!(str_at(build, "outputs.digest").contains("steps.push.outputs.digest"));
        let steps = steps_text(build);
        let push = position(&steps, "docker push");
        let login = position(&steps, "azure/login@");
        let render = position(&steps, "geoha render");
        assert!(login < push && push < render);
        assert!(steps[push].contains("$COMMIT"), "tagged by commit");
        assert!(steps[push].contains("RepoDigests"), "digest captured");
        assert!(steps[render].contains("--image-digest \"$DIGEST\""));
        assert_eq!(
            steps.iter().filter(|s| s.contains("docker build")).count(),
            1,
            "built once"
        );
    }
}

#[test]
fn regions_deploy_one_after_another_behind_a_smoke_test() {
    for (t, tree) in all_renderings() {
        let wf = yaml(&tree, PATH);
        let jobs = at(&wf, "jobs").as_object().unwrap();
        assert_eq!(jobs.len(), 1 + t.regions.len());
        let mut previous: Option<String> = None;
        for region in &t.regions {
            let id = format!("deploy-{}", region.name);
            let job = jobs.get(&id).unwrap_or_else(|| panic!("no job {id}"));
            let needs: Vec<&str> = at(job, "needs")
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap())
                .collect();
            assert!(needs.contains(&"build"));
            if let Some(p) = &previous {
                assert!(needs.contains(&p.as_str()), "{id} waits for {p}");
            } else {
                assert_eq!(needs, ["build"]);
            }
            assert_eq!(str_at(job, "environment.name"), "production");
            assert_eq!(str_at(job, "permissions.id-token"), "write");
            assert_eq!(str_at(job, "env.REGION"), region.name);
            assert_eq!(
                str_at(job, "env.CLUSTER"),
                region.cluster_name(&t.environment)
            );
            let steps = steps_text(job);
            let apply = position(&steps, "kubectl apply -k \"rendered/k8s/overlays/$REGION\"");
            let rollout = position(&steps, "rollout status deployment/geoha-api");
            let smoke = position(&steps, "/default/");
            assert!(position(&steps, "azure/login@") < apply);
            assert!(apply < rollout && rollout < smoke);
            assert!(steps[smoke].contains("$INGRESS_HOST"));
            assert!(str_at(job, "env.INGRESS_HOST").ends_with(".cloudapp.azure.com"));
            previous = Some(id);
        }
    }
}

#[test]
fn azure_is_reached_with_oidc_and_no_stored_secret() {
    for (_, tree) in all_renderings() {
        let text = tree.get(PATH).unwrap();
        assert!(!text.contains("secrets."), "no long-lived secret");
        assert!(!text.contains("creds:"), "no service-principal JSON");
        let wf = yaml(&tree, PATH);
        for (id, job) in at(&wf, "jobs").as_object().unwrap() {
            for step in at(job, "steps").as_array().unwrap() {
                if step["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("azure/login@"))
                {
                    for key in ["client-id", "tenant-id", "subscription-id"] {
                        assert!(
                            str_at(step, &format!("with.{key}")).contains("vars."),
                            "{id}"
                        );
                    }
                }
                // Expressions stay out of shell scripts (no template injection).
                if let Some(run) = step["run"].as_str() {
                    assert!(!run.contains("${{"), "{id}: expression inside run");
                }
            }
        }
    }
}
