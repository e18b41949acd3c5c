"""From a .gitlab-ci.yml to a Plan, in GitLab's order: includes merged, jobs read (kuberunner.job),
stages and pipeline keywords checked, workflow and job rules evaluated, parallel jobs expanded, needs
resolved and the DAG checked for cycles."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from kuberunner.errors import JobFileError
from kuberunner.job import values
from kuberunner.job.gitlab_ci import jobs_document, read_jobs, read_text
from kuberunner.job.spec import JobSpec
from kuberunner.job.yaml_nodes import Map, load_documents
from kuberunner.pipeline.plan import keywords
from kuberunner.pipeline.plan.include import Fetch, fetch_remote, resolve_includes
from kuberunner.pipeline.plan.inputs import main_file_documents
from kuberunner.pipeline.plan.keywords import JobKeywords
from kuberunner.pipeline.plan.model import Need, Plan, PlannedJob, When
from kuberunner.pipeline.plan.rules import Outcome, RuleContext, evaluate_only_except, evaluate_rules


@dataclass(frozen=True, slots=True)
class PlanRequest:
    file: Path
    variables: Mapping[str, str]
    """Predefined variables (CI_COMMIT_BRANCH, CI_PIPELINE_SOURCE...) and --var ones, for rules."""
    names: tuple[str, ...] = ()
    """Run only these jobs (a parallel job's base name names all its nodes); manual ones among them run."""
    manual: bool = False
    """--manual: run every manual job too."""
    changed: frozenset[str] | None = None
    fetch: Fetch = fetch_remote
    inputs: Mapping[str, str] = field(default_factory=dict)
    """`--input NAME=VALUE`: the main file's own `spec:inputs`, as text read by each input's type."""


@dataclass(slots=True)
class _Read:
    name: str
    spec: JobSpec
    keywords: JobKeywords
    outcome: Outcome
    path: Path
    variables: tuple[tuple[str, str], ...]
    """Global, workflow and the job's own variables, later ones winning."""


def plan_pipeline(request: PlanRequest) -> Plan:
    path = request.file
    project_dir = path.resolve().parent
    warnings: list[str] = []
    documents = main_file_documents(load_documents(read_text(path), path), request.inputs, path)
    root = jobs_document(documents, path, warnings)
    base = RuleContext(request.variables, project_dir, request.changed)
    merged = resolve_includes(root, path, context=base, fetch=request.fetch)
    read = read_jobs(merged.root, path, warnings, origins=merged.origins)
    stages = (".pre", *keywords.stages_of(read.root, path), ".post")
    variables_entry = read.root.get("variables")
    global_variables = dict(values.variables(variables_entry, "", path, [])) if variables_entry else {}
    workflow_vars: tuple[tuple[str, str], ...] = ()
    workflow = read.root.get("workflow")
    if workflow is not None:
        rules = workflow.value.get("rules") if isinstance(workflow.value, Map) else None
        if rules is not None:
            context = replace(base, variables={**global_variables, **request.variables})
            outcome = evaluate_rules(rules, "workflow", path, context, workflow=True)
            if outcome.when == "never":
                return Plan(stages, (), warnings=read.pipeline.warnings, workflow_excluded=True)
            workflow_vars = outcome.variables
    jobs: list[_Read] = []
    for spec in read.pipeline.jobs:
        job_path = merged.origins.get(spec.name, path)
        job_map = read.merged[spec.name]
        found = keywords.read(spec.name, job_map, job_path, stages)
        variables = {**dict(_with_workflow(spec, job_map, workflow_vars)), **request.variables}
        context = replace(base, variables=variables)
        rules = job_map.get("rules")
        if rules is not None:
            outcome = evaluate_rules(rules, f"jobs:{spec.name}:rules", job_path, context)
        elif evaluate_only_except(job_map, f"jobs:{spec.name}", job_path, context):
            outcome = Outcome(None)  # the job's own `when:` applies
        else:
            outcome = Outcome("never")
        jobs.append(
            _Read(spec.name, spec, found, outcome, job_path, _with_workflow(spec, job_map, workflow_vars))
        )
    _check_references(jobs, stages)
    planned, excluded = _expand(jobs, stages)
    planned = _resolve_needs(planned, jobs, excluded)
    _check_cycles(planned, path)
    planned = _select(planned, request, excluded)
    order = sorted(range(len(planned)), key=lambda i: (planned[i].stage_index, i))
    return Plan(
        stages=stages,
        jobs=tuple(planned[i] for i in order),
        excluded=tuple(excluded),
        warnings=read.pipeline.warnings,
        variables=workflow_vars,
    )


def _with_workflow(
    spec: JobSpec, job: Map, workflow_vars: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...]:
    """GitLab: `workflow:rules:variables` override global variables, the job's own override both."""
    own = job.get("variables")
    own_keys = {e.key for e in own.value} if own is not None and isinstance(own.value, Map) else set()
    return (*spec.variables, *((k, v) for k, v in workflow_vars if k not in own_keys))


def _check_references(jobs: list[_Read], stages: tuple[str, ...]) -> None:
    index = {j.name: stages.index(j.keywords.stage) for j in jobs}
    for job in jobs:
        mine = index[job.name]
        for need in job.keywords.needs or ():
            if need.job not in index:
                if need.optional:
                    continue
                raise JobFileError(job.path, need.line, f"{job.name} job: undefined need: {need.job}")
            if index[need.job] > mine:
                raise JobFileError(
                    job.path,
                    need.line,
                    f"{job.name} job: need {need.job} is not defined in current or prior stages",
                )
        needed = {n.job for n in job.keywords.needs or ()}
        for dependency, line in job.keywords.dependencies or ():
            if dependency not in index:
                raise JobFileError(job.path, line, f"{job.name} job: undefined dependency: {dependency}")
            if index[dependency] > mine:
                raise JobFileError(
                    job.path,
                    line,
                    f"{job.name} job: dependency {dependency} is not defined in current or prior stages",
                )
            if job.keywords.needs is not None and dependency not in needed:
                raise JobFileError(
                    job.path, line, f"jobs:{job.name} dependencies the {dependency} should be part of needs"
                )


def _expand(jobs: list[_Read], stages: tuple[str, ...]) -> tuple[list[PlannedJob], list[str]]:
    planned: list[PlannedJob] = []
    excluded: list[str] = []
    for job in jobs:
        found, outcome = job.keywords, job.outcome
        when = outcome.when or found.when or "on_success"
        if when == "never":
            excluded.append(job.name)
            continue
        # GitLab: `when: manual` is allowed to fail unless said otherwise; in rules it is not.
        default_allow = when == "manual" and job.outcome.when is None
        allow = outcome.allow_failure if outcome.allow_failure is not None else found.allow_failure
        start_in = found.start_in
        if outcome.start_in is not None:
            start_in = keywords.duration_text(
                outcome.start_in, f"jobs:{job.name}:rules:rule start_in", job.path
            )
        nodes = found.nodes if found.nodes is not None else ((),)
        total = len(nodes)
        for position, node_vars in enumerate(nodes, start=1):
            extra: tuple[tuple[str, str], ...] = ()
            name = job.name
            if found.nodes is not None:
                name = _node_name(job.name, position, total, node_vars, found.matrix)
                extra = (("CI_NODE_INDEX", str(position)), ("CI_NODE_TOTAL", str(total)), *node_vars)
            spec = replace(
                job.spec,
                name=name,
                variables=(*job.variables, *outcome.variables, *extra),
            )
            planned.append(
                PlannedJob(
                    name=name,
                    base=job.name,
                    stage=found.stage,
                    stage_index=stages.index(found.stage),
                    spec=spec,
                    when=_when(when),
                    allow_failure=allow if allow is not None else default_allow,
                    exit_codes=found.exit_codes,
                    start_in=start_in,
                )
            )
    return planned, excluded


def _when(text: str) -> When:
    match text:
        case "on_failure" | "always" | "manual" | "delayed":
            return text
    return "on_success"


def _node_name(
    base: str, position: int, total: int, node_vars: tuple[tuple[str, str], ...], matrix: bool
) -> str:
    if not matrix:
        return f"{base} {position}/{total}"
    return f"{base}: [{', '.join(value for _, value in node_vars)}]"


def _resolve_needs(planned: list[PlannedJob], jobs: list[_Read], excluded: list[str]) -> list[PlannedJob]:
    nodes: dict[str, list[PlannedJob]] = {}
    for job in planned:
        nodes.setdefault(job.base, []).append(job)
    by_name = {j.name: j for j in jobs}
    result = []
    for written in planned:
        job = _with_dependencies(written, by_name[written.base].keywords, nodes)
        refs = by_name[job.base].keywords.needs
        if refs is None:
            result.append(job)
            continue
        needs: list[Need] = []
        for ref in refs:
            targets = nodes.get(ref.job)
            if targets is None:
                if ref.optional:
                    continue
                raise JobFileError(
                    by_name[job.base].path,
                    ref.line,
                    f"'{job.base}' job needs '{ref.job}' job, but '{ref.job}' does not exist in the "
                    "pipeline. "
                    "This might be because of the only, except, or rules keywords. To need a job that "
                    "sometimes does not exist in the pipeline, use needs:optional.",
                )
            for target in targets:
                if ref.matrix is not None and not any(
                    set(row) <= set(target.spec.variables) for row in ref.matrix
                ):
                    continue
                needs.append(Need(target.name, ref.optional, ref.artifacts))
        result.append(replace(job, needs=tuple(needs)))
    return result


def _with_dependencies(job: PlannedJob, found: JobKeywords, nodes: dict[str, list[PlannedJob]]) -> PlannedJob:
    """`dependencies:` as plan job names: a parallel job named there stands for all its nodes."""
    if found.dependencies is None:
        return job
    names = tuple(node.name for name, _ in found.dependencies for node in nodes.get(name, ()))
    return replace(job, dependencies=names)


def _check_cycles(planned: list[PlannedJob], path: Path) -> None:
    graph = {j.name: [n.name for n in j.needs or ()] for j in planned}
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for need in graph.get(name, ()):
            if state.get(need) == 1:
                cycle = " -> ".join([*trail[trail.index(need) :], need]) if need in trail else need
                raise JobFileError(path, 0, f"The pipeline has circular dependencies: {cycle}")
            if state.get(need) is None:
                visit(need, [*trail, need])
        state[name] = 2

    for name in graph:
        if state.get(name) is None:
            visit(name, [name])


def _select(planned: list[PlannedJob], request: PlanRequest, excluded: list[str]) -> list[PlannedJob]:
    names = set(request.names)
    if names:
        known = {j.name for j in planned} | {j.base for j in planned}
        missing = [n for n in request.names if n not in known]
        if missing and missing[0] in excluded:
            raise JobFileError(
                request.file,
                0,
                f"job {missing[0]!r} is not in this pipeline: its rules (or only/except) exclude it",
            )
        if missing:
            available = ", ".join(dict.fromkeys(j.base for j in planned)) or "none"
            hidden = ", as names starting with '.' are hidden" if missing[0].startswith(".") else ""
            raise JobFileError(request.file, 0, f"no job named {missing[0]!r}{hidden} (jobs: {available})")
        planned = [j for j in planned if j.name in names or j.base in names]
        chosen = {j.name for j in planned}
        planned = [
            replace(j, needs=tuple(n for n in j.needs if n.name in chosen)) if j.needs is not None else j
            for j in planned
        ]
    if names or request.manual:
        planned = [
            replace(j, when="on_success")
            if j.when == "manual" and (request.manual or j.name in names or j.base in names)
            else j
            for j in planned
        ]
    return planned
