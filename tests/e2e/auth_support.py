"""Helpers for tests that knock on sign-in: every test sends from 127.0.0.1, so one that makes auth count
guessed tokens against that address wipes the count afterwards, leaving later tests free to sign in."""

import psycopg2


def forget_guesses(stack) -> None:
    with psycopg2.connect(stack.databases["auth"]) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM rate_hits WHERE key LIKE 'verify:%%'")


def guesses_counted(stack) -> int:
    with psycopg2.connect(stack.databases["auth"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM rate_hits WHERE key LIKE 'verify:%%'")
        return cur.fetchone()[0]
