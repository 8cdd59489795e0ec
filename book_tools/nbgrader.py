"""nbgrader's cell format: answer cells between solution markers, graded test cells.

:func:`book_tools.editions.edition` builds the nbgrader source notebook with these, from the
same tagged cells as the other editions: per exercise, one autograded answer cell (the
starter with each ``raise NotImplementedError`` replaced by the solution's body between
``### BEGIN SOLUTION`` / ``### END SOLUTION``, which ``nbgrader generate_assignment`` turns
back into a stub) and one autograder test cell, the checker, worth 1 point.
"""

from __future__ import annotations

import ast

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


def metadata(grade_id: str, *, solution: bool, grade: bool, points: int = 0) -> dict:
    """The ``metadata.nbgrader`` of a cell (schema 3)."""
    meta = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": not solution,
        "schema_version": 3,
        "solution": solution,
        "task": False,
    }
    if grade:
        meta["points"] = points
    return meta


def _functions(source: str) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant)


def answer_cell_source(starter: str, solutions: list[str]) -> str | None:
    """The starter cell with each ``raise NotImplementedError`` replaced by the solution's body
    between nbgrader's solution markers, or None if the two do not match function by function
    (the stub's functions must end with that raise; the solution must define only them)."""
    stubs = _functions(starter)
    if not stubs or len(stubs) != len(ast.parse(starter).body):
        return None
    solved: dict[str, tuple[ast.FunctionDef, str]] = {}
    for source in solutions:
        for node in ast.parse(source).body:
            if not isinstance(node, ast.FunctionDef) or node.name not in stubs:
                return None
            solved[node.name] = (node, source)
    if set(solved) != set(stubs):
        return None
    replacements, replaced = {}, set()
    for name, stub in stubs.items():
        last = stub.body[-1]
        is_raise = isinstance(last, ast.Raise) and "NotImplementedError" in ast.unparse(last)
        if not is_raise:
            return None
        node, source = solved[name]
        body = node.body[1:] if _is_docstring(node.body[0]) else node.body  # the stub's stays
        lines = source.splitlines()[body[0].lineno - 1 : body[-1].end_lineno]
        old_indent = len(lines[0]) - len(lines[0].lstrip())
        indent = " " * last.col_offset
        replaced.update(range(last.lineno, last.end_lineno))  # a raise over several lines
        replacements[last.lineno - 1] = [
            indent + BEGIN,
            *[(indent + line[old_indent:]) if line.strip() else "" for line in lines],
            indent + END,
        ]
    out = []
    for index, line in enumerate(starter.splitlines()):
        if index not in replaced:
            out.extend(replacements.get(index, [line]))
    return "\n".join(out)


def answer_cells(starter: nbformat.NotebookNode, definitions: list[str]) -> list:
    """The answer cells of an exercise: the starter filled in, or, where starter and solution
    do not match function by function, the solution's definitions whole between markers."""
    label = starter.metadata["exercise"]["label"]
    answer = answer_cell_source(starter.source, definitions)
    if answer is not None:
        cell = nbformat.v4.new_code_cell(answer, metadata=dict(starter.metadata))
        cell.metadata["nbgrader"] = metadata(f"{label}-answer", solution=True, grade=False)
        return [cell]
    return [
        nbformat.v4.new_code_cell(
            f"{BEGIN}\n{source}\n{END}",
            metadata={
                **dict(starter.metadata),
                "nbgrader": metadata(f"{label}-answer-{n}", solution=True, grade=False),
            },
        )
        for n, source in enumerate(definitions)
    ]


def graded(checker: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The checker cell as an autograder test cell worth 1 point."""
    label = checker.metadata["exercise"]["label"]
    checker.metadata["nbgrader"] = metadata(f"{label}-check", solution=False, grade=True, points=1)
    return checker
