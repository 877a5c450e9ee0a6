import atexit
import logging
import os
import sys

from soteacher.cli import main

code = main()
# Skip the interpreter's teardown of torch, MLflow and SQLAlchemy modules (about 2 s per job, a sizeable share
# of a short job): by now every output is written and closed, every run ended. Exit handlers still run.
atexit._run_exitfuncs()
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
