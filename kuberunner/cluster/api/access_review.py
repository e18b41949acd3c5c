"""SelfSubjectAccessReview and SelfSubjectRulesReview (authorization.k8s.io/v1): what
`kubectl auth can-i` and `kubectl auth can-i --list` ask.

Every request is allowed except those the `forbid` switch names (`authz`), so the reviews answer
from the same rule. Reviews are not stored: the answer is the request with its status filled in.
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from kuberunner.cluster.api import discovery, requests
from kuberunner.cluster.api.authz import denied
from kuberunner.cluster.api.rest import json_response, method_not_allowed
from kuberunner.cluster.api.state import STATE
from kuberunner.cluster.status import bad_request

GROUP_VERSION = "authorization.k8s.io/v1"


async def self_subject_access_review(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if request.method != "POST":
        raise method_not_allowed()
    body = await requests.read_object(request, "selfsubjectaccessreviews")
    if not isinstance(body.get("spec"), dict):
        raise bad_request("SelfSubjectAccessReview needs a spec")
    review: dict[str, Any] = copy.deepcopy(body)
    review["kind"] = "SelfSubjectAccessReview"
    review["apiVersion"] = GROUP_VERSION
    if not isinstance(review.get("metadata"), dict):
        review["metadata"] = {}
    attributes = review["spec"].get("resourceAttributes")
    allowed = True
    if isinstance(attributes, dict):
        allowed = not denied(
            state.forbid,
            verb=str(attributes.get("verb") or ""),
            resource=str(attributes.get("resource") or ""),
            subresource=str(attributes.get("subresource") or "") or None,
        )
    elif not isinstance(review["spec"].get("nonResourceAttributes"), dict):
        raise bad_request(
            "SelfSubjectAccessReview.authorization.k8s.io is invalid: spec.resourceAttributes: "
            "Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes "
            "must be specified"
        )
    review["status"] = {"allowed": allowed}
    return json_response(review, 201)


_REVIEWS_RULE = {
    "verbs": ["create"],
    "apiGroups": ["authorization.k8s.io"],
    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
}


def _rules(forbid: tuple[str, ...]) -> list[dict[str, Any]]:
    if not forbid:
        return [_REVIEWS_RULE, {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]
    rules = [_REVIEWS_RULE]
    for entry in discovery.api_resources()["resources"]:
        resource, _, sub = entry["name"].partition("/")
        verbs = [
            v
            for v in entry["verbs"]
            if not denied(forbid, verb=v, resource=resource, subresource=sub or None)
        ]
        if verbs:
            rules.append({"verbs": verbs, "apiGroups": [""], "resources": [entry["name"]]})
    return rules


async def self_subject_rules_review(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if request.method != "POST":
        raise method_not_allowed()
    body = await requests.read_object(request, "selfsubjectrulesreviews")
    review: dict[str, Any] = {
        "kind": "SelfSubjectRulesReview",
        "apiVersion": GROUP_VERSION,
        "metadata": {},
        "spec": {},
        "status": {
            "resourceRules": _rules(tuple(state.forbid)),
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": False,
        },
    }
    del body  # only its namespace could matter, and the rules are the same in every namespace
    return json_response(review, 201)
