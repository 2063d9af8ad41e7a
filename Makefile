# automation: PGXS build.
#
#   make && make install     build and install the extension (PostgreSQL 15)
#   make demo                a throwaway cluster with the demo shop (see README)
#   make test                every test suite in a throwaway installation
#   make bench               the benchmarks (minutes; not part of make test)

EXTENSION = automation
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = automation
OBJS = \
	src/automation.o \
	src/binding.o \
	src/hyp2f1.o \
	src/journey.o \
	src/lifecycle.o \
	src/outbox.o \
	src/prediction.o \
	src/profile.o \
	src/related.o \
	src/segment.o \
	src/worker.o

# The install script of the version under development is assembled from one
# piece per responsibility under sql/install/, in file-name order.  Released
# versions are frozen as sql/automation--<version>.sql next to the upgrade
# scripts sql/automation--<from>--<to>.sql.
INSTALL_PARTS = $(sort $(wildcard sql/install/*.sql))
DATA_built = $(EXTENSION)--$(EXTVERSION).sql
DATA = $(filter-out sql/$(EXTENSION)--$(EXTVERSION).sql,$(wildcard sql/$(EXTENSION)--*.sql))

# pg_regress tests: every sql/<topic>.sql with expected/<topic>.out.
REGRESS = $(sort $(patsubst sql/%.sql,%,$(filter-out sql/$(EXTENSION)--%,$(wildcard sql/*.sql))))
REGRESS_OPTS = --load-extension=$(EXTENSION)

EXTRA_CLEAN = $(DATA_built) results regression.diffs regression.out

# Debian's PostgreSQL 15 where it is installed, else whatever pg_config is on PATH.
PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

ifneq ($(PGXS),)
include $(PGXS)
else
all install installcheck:
	@echo "pg_config was not found: install postgresql-server-dev-15 (make demo and make test do it for you)" >&2
	@exit 1
endif

$(EXTENSION)--$(EXTVERSION).sql: $(INSTALL_PARTS)
	cat $^ > $@

.PHONY: demo demo-stop test bench

demo:
	@test/demo/run

demo-stop:
	@test/demo/run stop

test:
	@test/run

bench:
	@test/bench/run
