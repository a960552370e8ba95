"""The Vigil operator: reconciles `ModelMonitor` resources into running components.

- `placement`: where the shared plan (`vigil.plan.build_plan`) runs in Kubernetes.
- `manifests`: pure functions from plan to Deployments, Services, ConfigMaps, Jobs.
- `reconcile`: create / patch / delete children idempotently.
- `status`: the `.status` that `kubectl get monitors` shows.
- `handlers`: the kopf handlers; `runner.run` starts the process (`vigil operator`).
- `rbac.yaml`: the least-privilege rules the operator needs (used by the Helm chart).

Importing this package imports neither TensorFlow nor kopf's reactor.
"""


def run(*args, **kwargs):
    """`vigil_operator.runner.run` (imported lazily so `import vigil_operator` stays light)."""
    from vigil_operator.runner import run as _run

    return _run(*args, **kwargs)
