"""Extensions, created here uninitialised and wired in create_app() with init_app."""

from typing import TYPE_CHECKING, ClassVar

from flask_htmx import HTMX
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.model import Model as _FlaskModel
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData, Table
from sqlalchemy.orm import DeclarativeBase

# Named constraints so Alembic can alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)

# The models' base class. db.Model is made at run time, which a type checker cannot follow as a
# base class (python/mypy#8603); to mypy it is what it is made of: Base plus the extension's
# model mixin. Every model here is declared with columns, so its __table__ is a Table.
if TYPE_CHECKING:

    class Model(Base, _FlaskModel):
        __abstract__ = True
        __table__: ClassVar[Table]

else:
    Model = db.Model
migrate = Migrate()
csrf = CSRFProtect()
login_manager = LoginManager()
htmx = HTMX()
# Limits are set per route; storage and on/off come from RATELIMIT_* settings.
limiter = Limiter(key_func=get_remote_address, default_limits=[])

# app.extensions key of a context manager to wait in while a request blocks on something
# slow that is not its own work (the inbox's group commit). The serving layer sets it
# (app/serving/admission.py); without it, waiting is plain.
WAIT_OUTSIDE = "kassa_wait_outside"

# app.extensions key of a function that calls a CPU-heavy function (a password hash) without
# stalling the worker's other requests: `runner(fn, *args)` returns `fn(*args)`. The serving
# layer sets it at start-up (app/serving/greenlets.py: gevent's native thread pool under
# gevent workers); without it, the call is plain. Read by app/auth/service.py.
OFF_THE_EVENT_LOOP = "kassa_off_the_event_loop"
