"""Planning: from a goal to a run of work items ordered by the code's own dependencies.

    files.py      the repository's source files and their languages
    lang_python.py, lang_js.py, lang_shell.py
                  one language each: the imports a file names, resolved to files
    graph.py      the import graph: edges, cycles (strongly connected parts), layers
    model.py      the plan the model answers (its JSON schema) and its validation
    order.py      items mapped to files, the edges the imports add, the critical path
    render.py     the plan as a tree, the graph's summary, both as JSON too
    session.py    the planning session: the real CLI, read-only, with --json-schema
    queueing.py   a plan as one batch of queue items (a run)

scripts/plan.sh is the command; docs/planning.md says how it is used.
"""
