"""Alembic migrations of the registry database, applied automatically when a workspace opens.

Add a migration with ``alembic -c llmops/db/migrations/alembic.ini revision -m "..."``, write its
``upgrade``, and bump :data:`HEAD` (a test checks that it matches Alembic's head).
"""

HEAD = "0014"
"""Newest revision; a database already at it is opened without importing Alembic."""
