"""The documentation site builds without a warning."""

import glob
import os
import subprocess
import sys

from tests.test_case import REPO_ROOT
from tests.test_case import TestCase


class DocsTest(TestCase):
    def test_site_builds_strictly(self):
        site = os.path.join(self.get_temp_dir(), "site")
        result = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict",
             "--site-dir", site],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        )  # fmt: skip
        self.assertEqual(result.returncode, 0, msg=result.stderr[-3000:])
        # The API reference is generated from the docstrings.
        with open(os.path.join(site, "api", "layers", "index.html")) as f:
            page = f.read()
        self.assertIn("ADDropAttention", page)
        self.assertIn("Multi-head attention that AD-DROP can mask", page)
        # Tutorial figures are part of the site.
        figure = os.path.join(
            site, "tutorials", "attribution_vs_attention", "figure_1.png"
        )
        self.assertTrue(os.path.isfile(figure))
        # Benchmark figures come from benchmarks/results through the
        # docs/benchmarks/results link; the runs' other files stay out of
        # the site.
        results = os.path.join(site, "benchmarks", "results", "glue")
        self.assertTrue(os.path.isfile(os.path.join(results, "curves.png")))
        self.assertFalse(os.path.exists(os.path.join(results, "runs.jsonl")))


class RenderedTutorialsTest(TestCase):
    def test_every_rendered_page_holds_its_scripts_text_in_order(self):
        sys.path.insert(0, os.path.join(REPO_ROOT, "docs"))
        try:
            import render_tutorials
        finally:
            sys.path.pop(0)
        scripts = sorted(glob.glob(os.path.join(REPO_ROOT, "examples", "*.py")))
        self.assertNotEmpty(scripts)
        stale = []
        for script in scripts:
            name = os.path.splitext(os.path.basename(script))[0]
            with open(script) as f:
                header, cells = render_tutorials.parse(f.read())
            with open(
                os.path.join(REPO_ROOT, "docs", "tutorials", f"{name}.md")
            ) as f:
                page = f.read()
            position = page.index(f"# {header['Title']}")
            for _, text in cells:
                found = page.find(text, position)
                if found < 0:
                    stale.append(f"{name}: {text[:60]!r}")
                    break
                position = found + len(text)
        self.assertEqual(
            stale,
            [],
            msg="rendered pages out of date with their scripts: run "
            "`python docs/render_tutorials.py NAME` (arguments as in the "
            "page's footer)",
        )
