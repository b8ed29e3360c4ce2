"""Where the repository's files are, for the code that reads them.

The package lives at ``<repo>/convnext_dense`` (an editable install points
there too), so the configs the demos, the analysis tools and the op parity
checks build are found from here, whatever the working directory.
"""
import os.path as osp

# <repo>/convnext_dense/paths.py -> <repo>
REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = osp.join(REPO_ROOT, 'configs')
