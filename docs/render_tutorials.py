"""Renders the tutobook tutorials in `examples/` into documentation pages.

A tutorial is a keras-io tutobook: a header docstring (Title, Author, ...),
then top-level `\"\"\"` blocks of Markdown between runs of Python code. This
script runs the code cell by cell in one namespace, as the script itself
would run, and writes `docs/tutorials/<name>.md` with every cell's printed
output under it and every matplotlib figure the cell left open saved as a
PNG next to the page.

    python docs/render_tutorials.py                      # every tutorial
    python docs/render_tutorials.py attribution_vs_attention -- --epochs 1

Arguments after `--` go to the tutorial's own argument parser;
`RENDER_MACHINE` describes the machine in the page's footer. Pages are
committed: the documentation build does not run TensorFlow.
"""

import contextlib
import glob
import io
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "examples")
OUTPUT = os.path.join(HERE, "tutorials")


def parse(source):
    """Splits a tutobook into its header and `(kind, text)` cells.

    `kind` is `"markdown"`, `"shell"` (a `\"\"\"shell` block) or `"code"`.
    """
    lines = source.splitlines()
    cells, code, i = [], [], 0
    header = None

    def flush_code():
        text = "\n".join(code).strip("\n")
        if text.strip():
            cells.append(("code", text))
        code.clear()

    while i < len(lines):
        line = lines[i]
        opening = re.fullmatch(r'"""(shell)?', line)
        if opening is None:
            code.append(line)
            i += 1
            continue
        end = lines.index('"""', i + 1)
        block = "\n".join(lines[i + 1 : end]).strip("\n")
        flush_code()
        if header is None and not cells:
            header = dict(
                row.split(": ", 1) for row in block.splitlines() if ": " in row
            )
        else:
            cells.append(("shell" if opening.group(1) else "markdown", block))
        i = end + 1
    flush_code()
    if not header or "Title" not in header:
        raise ValueError("a tutobook starts with a header holding `Title:`")
    return header, cells


def render(path, argv=(), machine="2 CPU cores"):
    """Runs the tutorial at `path` and writes its page; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = os.path.splitext(os.path.basename(path))[0]
    with open(path) as f:
        header, cells = parse(f.read())
    figures_dir = os.path.join(OUTPUT, name)
    os.makedirs(figures_dir, exist_ok=True)
    for old in glob.glob(os.path.join(figures_dir, "*.png")):
        os.remove(old)
    namespace = {"__name__": "__main__", "__file__": os.path.abspath(path)}
    saved_argv = sys.argv
    sys.argv = [path, *argv]
    command = " ".join(["python", f"examples/{name}.py", *argv])
    page = [
        f"# {header['Title']}",
        "",
        f"*{header.get('Description', '')}* Source: `examples/{name}.py`.",
        "",
    ]
    figure_count = 0
    start = time.time()
    try:
        for kind, text in cells:
            if kind == "markdown":
                page += [text, ""]
                continue
            if kind == "shell":
                page += ["```shell", text, "```", ""]
                continue
            page += ["```python", text, "```", ""]
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(text, path, "exec"), namespace)
            printed = out.getvalue().rstrip()
            if printed:
                page += ["```text", printed, "```", ""]
            for number in plt.get_fignums():
                figure_count += 1
                png = f"figure_{figure_count}.png"
                plt.figure(number).savefig(
                    os.path.join(figures_dir, png), dpi=100, bbox_inches="tight"
                )
                page += [f"![Figure {figure_count}]({name}/{png})", ""]
            plt.close("all")
    finally:
        sys.argv = saved_argv
    minutes = (time.time() - start) / 60
    page += [
        "---",
        "",
        f"*Rendered by `python docs/render_tutorials.py {name}`: the outputs "
        f"above are from `{command}`, which took {minutes:.1f} minutes on "
        f"{machine}.*",
        "",
    ]
    target = os.path.join(OUTPUT, f"{name}.md")
    with open(target, "w") as f:
        f.write("\n".join(page))
    if not figure_count:
        os.rmdir(figures_dir)
    return target


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    machine = os.environ.get("RENDER_MACHINE", "2 CPU cores")
    names, rest = argv, []
    if "--" in argv:
        names, rest = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    if not names:
        names = sorted(
            os.path.splitext(os.path.basename(p))[0]
            for p in glob.glob(os.path.join(EXAMPLES, "*.py"))
        )
    for name in names:
        path = os.path.join(EXAMPLES, f"{name}.py")
        if not os.path.isfile(path):
            raise SystemExit(f"no tutorial at {path}")
        print(f"rendered {render(path, rest, machine)}", flush=True)


if __name__ == "__main__":
    main()
