"""The pure half of a pipeline: includes, rules, parallel/matrix, validation and the DAG, as GitLab has them.

Nothing here runs a job or talks to a cluster; the only I/O is reading included files (local ones,
and remote ones over HTTPS, bounded in time and size).
"""
