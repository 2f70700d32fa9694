"""``coe view``: a local web app onto evaluation runs (a FastAPI app of its own, built with
``create_app``): the runs, one run's summary and accuracy-cost chart, a question browser that
pages and filters on the server over an index made once per run, and two runs compared question
by question. It reads run folders (``eval.results``) and writes nothing."""

from orchestrator.view.app import ViewSettings, create_app
from orchestrator.view.index import Query, RunIndex
from orchestrator.view.runs import Catalogue, find_runs

__all__ = ["Catalogue", "Query", "RunIndex", "ViewSettings", "create_app", "find_runs"]
