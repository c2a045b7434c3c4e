# The two commands of the README. Everything else is in bin/.
.PHONY: run test setup

run:
	bin/run

test:
	bin/test

setup:
	bin/setup
