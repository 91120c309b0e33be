# imapidled — one GNU Makefile, pkg-config for every library.
#
#   make            build everything into build/
#   make check      install missing Debian packages, build, run every test suite
#   make check-asan      the suites again with ASan + UBSan (build-asan/)
#   make check-valgrind  the unit suites, and the daemon in its tests, under valgrind (build-valgrind/)
#   make demo       start a throwaway Dovecot and show the protocol core at work
#   make bench      the figures of SPEC §8 against a real Dovecot (minutes; not part of check)
#   make soak       1,000 connect/disconnect cycles and 1,000 reloads: RSS and fds (minutes)
#   make fuzz       libFuzzer on every target in tests/fuzz/ (FUZZ_SECONDS each, default 60)
#   make install    PREFIX=/usr/local DESTDIR=
#   make clean

VERSION     := 0.1.0

PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
DATADIR     ?= $(PREFIX)/share
DOCDIR      ?= $(DATADIR)/doc/imapidled
MANDIR      ?= $(DATADIR)/man
DESTDIR     ?=

# Where the user unit, the D-Bus activation file and the interface XML go. pkg-config says where
# the distribution wants them, which is right for PREFIX=/usr only; any other PREFIX keeps them
# under itself (the systemd user manager and dbus-daemon search /usr/local as well).
pkgvar       = $(or $(shell $(PKG_CONFIG) --variable=$(1) $(2) 2>/dev/null),$(3))
ifeq ($(PREFIX),/usr)
SYSTEMD_USER_UNIT_DIR ?= $(call pkgvar,systemduserunitdir,systemd,$(PREFIX)/lib/systemd/user)
DBUS_SERVICES_DIR ?= $(call pkgvar,session_bus_services_dir,dbus-1,$(DATADIR)/dbus-1/services)
DBUS_INTERFACES_DIR ?= $(call pkgvar,interfaces_dir,dbus-1,$(DATADIR)/dbus-1/interfaces)
else
SYSTEMD_USER_UNIT_DIR ?= $(PREFIX)/lib/systemd/user
DBUS_SERVICES_DIR ?= $(DATADIR)/dbus-1/services
DBUS_INTERFACES_DIR ?= $(DATADIR)/dbus-1/interfaces
endif

B           ?= build
PKG_CONFIG  ?= pkg-config
CC          ?= cc
CLANG       ?= clang

# Every library the project uses, checked once. The unit-test runner adds check.
PKGS        := openssl libsystemd libnotify glib-2.0 gmime-3.0
PKG_CFLAGS  := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS    := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
SSL_CFLAGS  := $(shell $(PKG_CONFIG) --cflags openssl 2>/dev/null)
SSL_LIBS    := $(shell $(PKG_CONFIG) --libs openssl 2>/dev/null)
CHECK_CFLAGS := $(shell $(PKG_CONFIG) --cflags check 2>/dev/null)
CHECK_LIBS  := $(shell $(PKG_CONFIG) --libs check 2>/dev/null)

WARNINGS    := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes \
               -Wmissing-prototypes -Wpointer-arith -Wundef -Wno-unused-parameter
ifneq ($(CI),)
WARNINGS    += -Werror
endif

CFLAGS      ?= -O2 -g
override CFLAGS   += -std=gnu11 $(WARNINGS) -MMD -MP
override CPPFLAGS += -Iinclude -D_GNU_SOURCE -DIMAPIDLED_VERSION=\"$(VERSION)\"

# ---------------------------------------------------------------------------
# The protocol core: pure code, no I/O, no library dependencies. It is linked
# into everything and compiled again with the fuzzing sanitizers.
CORE_SRCS   := src/imap-parser.c src/imap-response.c src/imap-utf7.c src/imap-writer.c src/sasl.c src/uidset.c src/utf8.c
CORE_OBJS   := $(CORE_SRCS:%.c=$(B)/%.o)
CORE_LIB    := $(B)/libimapcore.a

# The engine and daemon: everything else in src/, on libsystemd, OpenSSL,
# GLib, GMime and libnotify.
# (main programs are not part of it)
MAIN_SRCS   := src/main.c src/imapidlectl.c
ENGINE_SRCS := $(filter-out $(CORE_SRCS) $(MAIN_SRCS),$(sort $(wildcard src/*.c)))
ENGINE_OBJS := $(ENGINE_SRCS:%.c=$(B)/%.o)
ENGINE_LIB  := $(B)/libimapidled.a

# Test support shared by integration tests and the demo: the Dovecot harness
# wrapper and a small blocking TLS client (the daemon's own non-blocking
# transport lives in src/); the notification bus monitor (sd-bus) is not the demo's.
TSUP_SRCS   := tests/harness/harness.c tests/support/fake-server.c tests/support/test-client.c tests/support/daemon-runner.c \
               tests/support/notify-monitor.c
TSUP_OBJS   := $(TSUP_SRCS:%.c=$(B)/%.o)

UNIT_SRCS   := tests/check-main.c $(sort $(wildcard tests/test-*.c))
UNIT_OBJS   := $(UNIT_SRCS:%.c=$(B)/%.o)

IT_SRCS     := $(sort $(wildcard tests/integration/test-*.c))
IT_BINS     := $(IT_SRCS:tests/integration/%.c=$(B)/%)

HELPER_BINS := $(B)/free-port
DEMO_BIN    := $(B)/imap-idle-demo

BINS        := $(B)/imapidled $(B)/imapidlectl

# The user unit and the D-Bus activation file, generated from their .in templates.
DATA_FILES  := $(B)/imapidled.service $(B)/org.imapidled.Daemon1.service

# libFuzzer: tests/fuzz/fuzz-NAME.c, seeds in tests/fuzz/corpus/NAME/, libFuzzer flags
# (-max_len ...) in tests/fuzz/NAME.options, an optional tests/fuzz/NAME.dict. The code they
# call is compiled again with clang, coverage and the sanitizers into $(B)/fuzz/obj/, apart
# from the normal build; each target takes from that archive what it needs.
FUZZ_SRCS   := $(sort $(wildcard tests/fuzz/fuzz-*.c))
FUZZ_NAMES  := $(FUZZ_SRCS:tests/fuzz/fuzz-%.c=%)
FUZZ_BINS   := $(FUZZ_NAMES:%=$(B)/fuzz/fuzz-%)
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined
# the library is held to -Werror by the normal build already; clang only reports here
FUZZ_CFLAGS := -std=gnu11 -g -O1 $(filter-out -Werror,$(WARNINGS)) $(FUZZ_SAN) $(PKG_CFLAGS)
FUZZ_OBJS   := $(patsubst %.c,$(B)/fuzz/obj/%.o,$(CORE_SRCS) $(ENGINE_SRCS))
FUZZ_LIB    := $(B)/fuzz/libimapidled-fuzz.a

.PHONY: all deps screenshot check check-build check-unit check-integration check-fuzz-smoke check-data check-install \
        demo demo-core fuzz fuzz-build install uninstall clean FORCE

all: $(CORE_LIB) $(ENGINE_LIB) $(BINS) $(DEMO_BIN) $(HELPER_BINS) $(DATA_FILES)

deps:
	@scripts/deps.sh

# ---------------------------------------------------------------------------
$(B)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

# Suites are found by name (suites-gen.h), not declared in a header.
$(B)/tests/%.o: override CFLAGS += $(CHECK_CFLAGS) $(PKG_CFLAGS) -Itests -Itests/support -Itests/harness -Wno-missing-prototypes

$(CORE_LIB): $(CORE_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(ENGINE_LIB): $(ENGINE_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(ENGINE_OBJS): override CFLAGS += $(PKG_CFLAGS)

# The runner's suite list, from every "Suite *x_suite(void) {" in tests/test-*.c.
$(B)/suites-gen.h: $(filter tests/test-%.c,$(UNIT_SRCS))
	@mkdir -p $(@D)
	@{ echo '/* generated by the Makefile */'; \
	   names=$$(sed -n 's/^Suite \*\([a-z0-9_]*_suite\)(void) {$$/\1/p' $^); \
	   for n in $$names; do echo "Suite *$$n(void);"; done; \
	   echo 'static Suite *(*const suite_fns[])(void) = {'; \
	   for n in $$names; do echo "        $$n,"; done; \
	   echo '};'; } > $@.tmp && mv $@.tmp $@

$(B)/tests/check-main.o: $(B)/suites-gen.h
$(B)/tests/check-main.o: override CPPFLAGS += -I$(B)

$(B)/test-unit: $(UNIT_OBJS) $(ENGINE_LIB) $(CORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(PKG_LIBS)

$(B)/test-%: $(B)/tests/integration/test-%.o $(TSUP_OBJS) $(ENGINE_LIB) $(CORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(PKG_LIBS)

$(B)/imapidled: $(B)/src/main.o $(ENGINE_LIB) $(CORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(B)/src/main.o: override CFLAGS += $(PKG_CFLAGS)

$(B)/imapidlectl: $(B)/src/imapidlectl.o $(ENGINE_LIB) $(CORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(B)/src/imapidlectl.o: override CFLAGS += $(PKG_CFLAGS)

$(DEMO_BIN): $(B)/tests/support/imap-idle-demo.o $(filter-out %/notify-monitor.o,$(TSUP_OBJS)) $(CORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(SSL_LIBS)

$(B)/free-port: $(B)/tests/support/free-port.o
	$(CC) $(LDFLAGS) -o $@ $^

$(B)/fuzz/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CLANG) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

$(FUZZ_LIB): $(FUZZ_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(B)/fuzz/fuzz-%: tests/fuzz/fuzz-%.c $(FUZZ_LIB)
	$(CLANG) $(CPPFLAGS) $(FUZZ_CFLAGS) $(WARNINGS) -fsanitize=fuzzer -MMD -MP -MT $@ -MF $@.d \
		-o $@ $< $(FUZZ_LIB) $(PKG_LIBS)

# Templates get the install paths. paths.stamp changes only when they do, so that
# `make install PREFIX=/usr` after a plain `make` does not install /usr/local paths.
$(B)/paths.stamp: FORCE
	@mkdir -p $(@D)
	@echo 'BINDIR=$(BINDIR)' | cmp -s - $@ || echo 'BINDIR=$(BINDIR)' > $@

$(B)/imapidled.service: systemd/imapidled.service.in $(B)/paths.stamp
	sed -e 's|@bindir@|$(BINDIR)|g' $< > $@.tmp && mv $@.tmp $@

$(B)/org.imapidled.Daemon1.service: dbus/org.imapidled.Daemon1.service.in $(B)/paths.stamp
	sed -e 's|@bindir@|$(BINDIR)|g' $< > $@.tmp && mv $@.tmp $@

# ---------------------------------------------------------------------------
# make check: dependencies first, then a fresh make so that pkg-config sees them.
check: deps
	@$(MAKE) --no-print-directory check-build
	@$(MAKE) --no-print-directory check-unit check-integration check-fuzz-smoke check-data check-install

check-build: $(CORE_LIB) $(BINS) $(B)/test-unit $(IT_BINS) $(DEMO_BIN) $(HELPER_BINS) $(FUZZ_BINS)

check-unit: $(B)/test-unit
	CK_DEFAULT_TIMEOUT=30 $(B)/test-unit

check-integration: $(BINS) $(IT_BINS) $(HELPER_BINS)
	@set -e; for t in $(IT_BINS); do \
		echo "== $$t"; IMAPIDLED_SRCDIR=$(CURDIR) IMAPIDLED_BUILDDIR=$(CURDIR)/$(B) \
		CK_DEFAULT_TIMEOUT=120 $$t; done

# The D-Bus XML against SPEC §5; the generated files with no placeholder left; the unit as the
# user manager reads it. systemd-analyze verify wants ExecStart= to exist (there is no daemon
# yet) and only warns about bad settings, so it checks a copy that runs /bin/true and any
# output fails.
check-data: $(DATA_FILES)
	python3 tests/check-dbus-xml.py dbus/*.xml
	@! grep -Hn '@[a-z_]*@' $(DATA_FILES)
	@set -e; d=$(abspath $(B))/verify; rm -rf $$d; mkdir -p $$d/run; chmod 700 $$d/run; \
	sed -e 's|^ExecStart=.*|ExecStart=/bin/true|' $(B)/imapidled.service > $$d/imapidled.service; \
	out=$$(XDG_RUNTIME_DIR=$$d/run systemd-analyze verify --user --man=no \
		$$d/imapidled.service 2>&1) || { echo "$$out"; exit 1; }; \
	if [ -n "$$out" ]; then echo "$$out"; exit 1; fi; \
	echo "systemd-analyze verify --user $(B)/imapidled.service: ok"

# A short fuzz run on every check; `make fuzz` runs longer. Each target starts from a copy
# of its seeds in $(B)/fuzz/run/NAME/ (the checked-in corpus is not written to); any crash,
# leak, timeout or out-of-memory fails. `make fuzz-merge` adds what a run found that covers
# new code to tests/fuzz/corpus/ (minimised: review and commit it).
check-fuzz-smoke: $(FUZZ_BINS)
	@tests/fuzz/run.sh run $(B) $(FUZZ_SMOKE_SECONDS) $(FUZZ_NAMES)

fuzz: $(FUZZ_BINS)
	@tests/fuzz/run.sh run $(B) $(FUZZ_SECONDS) $(FUZZ_NAMES)

fuzz-merge: $(FUZZ_BINS)
	@tests/fuzz/run.sh merge $(B) 0 $(FUZZ_NAMES)

fuzz-build: $(FUZZ_BINS)

.PHONY: fuzz-merge

demo: deps
	@$(MAKE) --no-print-directory $(BINS) $(HELPER_BINS)
	@IMAPIDLED_BUILDDIR=$(CURDIR)/$(B) scripts/demo.sh

# the protocol core alone, without the daemon
# docs/notification.png: real popups (dunst under Xvfb) for the README
screenshot: deps
	@$(MAKE) --no-print-directory $(BINS) $(HELPER_BINS) $(B)/test-notify
	CK_RUN_CASE=screenshot IMAPIDLED_SCREENSHOT=$(CURDIR)/$(B)/screen.png $(B)/test-notify
	$$(command -v convert-im6.q16 || echo convert) $(B)/screen.png -crop 460x128+564+0 +repage docs/notification.png

demo-core: deps
	@$(MAKE) --no-print-directory $(DEMO_BIN) $(HELPER_BINS)
	IMAPIDLED_SRCDIR=$(CURDIR) IMAPIDLED_BUILDDIR=$(CURDIR)/$(B) $(DEMO_BIN)

# ---------------------------------------------------------------------------
# make bench: the figures of SPEC §8 on the harness's Dovecot (bench/bench.sh says how each is
# taken). Not part of check: minutes long, and timings on a shared machine are no test.
# Writes $(B)/bench/results.md (also printed) and $(B)/bench/rss.png.
BENCH_BINS  := $(patsubst bench/%.c,$(B)/bench/%,$(filter-out bench/bench-common.c,$(sort $(wildcard bench/bench-*.c))))
BENCH_SUP   := $(B)/bench/bench-common.o $(TSUP_OBJS)

$(B)/bench/%.o: override CFLAGS += $(PKG_CFLAGS) -Itests/support -Itests/harness -pthread

$(BENCH_BINS): $(B)/bench/%: $(B)/bench/%.o $(BENCH_SUP) $(CORE_LIB)
	$(CC) $(LDFLAGS) -pthread -o $@ $^ $(PKG_LIBS)

bench-build: $(BINS) $(HELPER_BINS) $(BENCH_BINS)

bench:
	@scripts/deps.sh --bench
	@$(MAKE) --no-print-directory bench-build
	IMAPIDLED_SRCDIR=$(CURDIR) IMAPIDLED_BUILDDIR=$(CURDIR)/$(B) bench/bench.sh $(CURDIR)/$(B)/bench

.PHONY: bench bench-build

# ---------------------------------------------------------------------------
# make soak: test-faults' churn scenario at full length, SOAK_CYCLES connect/disconnect cycles
# and as many reloads (make check runs 200 of each): the fds before and after must be the same
# and VmRSS may grow by less than 512 KiB. The figures ("faults: churn: ...") are printed and
# kept in $(B)/soak.log with the daemon's log of a failure.
SOAK_CYCLES ?= 1000

soak: deps
	@$(MAKE) --no-print-directory $(BINS) $(HELPER_BINS) $(B)/test-faults
	@IMAPIDLED_SRCDIR=$(CURDIR) IMAPIDLED_BUILDDIR=$(CURDIR)/$(B) IMAPIDLED_SOAK_CYCLES=$(SOAK_CYCLES) \
		CK_RUN_CASE=churn $(B)/test-faults >$(B)/soak.log 2>&1; rc=$$?; \
		grep -E '^faults: churn|Checks|:[FE]:' $(B)/soak.log; exit $$rc

.PHONY: soak

# ---------------------------------------------------------------------------
DBUS_XML    := $(sort $(wildcard dbus/org.imapidled.Daemon1.*.xml))

install: $(BINS) $(DATA_FILES)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(SYSTEMD_USER_UNIT_DIR) $(DESTDIR)$(DBUS_SERVICES_DIR) $(DESTDIR)$(DBUS_INTERFACES_DIR)
	install -m 755 $(BINS) $(DESTDIR)$(BINDIR)/
	install -m 644 $(B)/imapidled.service $(DESTDIR)$(SYSTEMD_USER_UNIT_DIR)/
	install -m 644 $(B)/org.imapidled.Daemon1.service $(DESTDIR)$(DBUS_SERVICES_DIR)/
	install -m 644 $(DBUS_XML) $(DESTDIR)$(DBUS_INTERFACES_DIR)/
	install -m 644 man/imapidled.1 man/imapidlectl.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 man/imapidled.conf.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 644 README.md $(DESTDIR)$(DOCDIR)/

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(notdir $(BINS)))
	rm -f $(DESTDIR)$(SYSTEMD_USER_UNIT_DIR)/imapidled.service
	rm -f $(DESTDIR)$(DBUS_SERVICES_DIR)/org.imapidled.Daemon1.service
	rm -f $(addprefix $(DESTDIR)$(DBUS_INTERFACES_DIR)/,$(notdir $(DBUS_XML)))
	rm -f $(DESTDIR)$(MANDIR)/man1/imapidled.1 $(DESTDIR)$(MANDIR)/man1/imapidlectl.1 \
		$(DESTDIR)$(MANDIR)/man5/imapidled.conf.5
	rm -rf $(DESTDIR)$(DOCDIR)

# A staged install and uninstall leave exactly the expected files.
check-install: $(BINS) $(DATA_FILES)
	@set -e; stage=$(abspath $(B))/stage; rm -rf $$stage; \
	$(MAKE) --no-print-directory install DESTDIR=$$stage PREFIX=/usr >/dev/null; \
	for f in /usr/bin/imapidled /usr/bin/imapidlectl /usr/share/man/man1/imapidled.1 \
		/usr/share/man/man1/imapidlectl.1 /usr/share/man/man5/imapidled.conf.5 \
		/usr/share/doc/imapidled/README.md; do test -f $$stage$$f || { echo "missing $$f"; exit 1; }; done; \
	unit=$$(find $$stage -name imapidled.service); test -n "$$unit"; \
	grep -q '^ExecStart=/usr/bin/imapidled$$' $$unit; \
	act=$$(find $$stage -path '*dbus-1/services/org.imapidled.Daemon1.service'); test -n "$$act"; \
	grep -q '^SystemdService=imapidled.service$$' $$act; grep -q '^Exec=/usr/bin/imapidled$$' $$act; \
	test $$(find $$stage -path '*dbus-1/interfaces/org.imapidled.Daemon1.*.xml' | wc -l) -eq 3; \
	$(MAKE) --no-print-directory uninstall DESTDIR=$$stage PREFIX=/usr >/dev/null; \
	left=$$(find $$stage -type f); test -z "$$left" || { echo "left after uninstall: $$left"; exit 1; }; \
	rm -rf $$stage; echo "install: ok (PREFIX=/usr, unit in $${unit#$$stage})"

# ---------------------------------------------------------------------------
# make check-asan: everything built again with AddressSanitizer + UBSan into $(ASAN_B)/, then
# the unit suites and every integration test. make check-valgrind: a plain -O1 build into
# $(VALGRIND_B)/; the unit suites, the VALGRIND_WHOLE test programs (the engine in-process) and
# the daemons that the VALGRIND_DAEMON tests start run under valgrind memcheck.
# tests/sanitizers/run.sh runs them and fails on any report from any process, the daemons'
# included; suppressions in tests/sanitizers/. README, "Sanitizers": what runs, how long.
SAN_FLAGS   := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ASAN_B      ?= build-asan
VALGRIND_B  ?= build-valgrind
VALGRIND_WHOLE  ?= test-fake-server test-session-quirks test-imap-dovecot test-imap-session test-tls-conn
VALGRIND_DAEMON ?= test-daemon test-bus test-hooks test-notify test-imapidlectl test-suspend

check-asan: deps
	@$(MAKE) --no-print-directory B=$(ASAN_B) CFLAGS="-O1 -g $(SAN_FLAGS)" LDFLAGS="$(SAN_FLAGS)" sanitizer-build
	@tests/sanitizers/run.sh asan $(ASAN_B) $(notdir $(IT_BINS))

check-valgrind: deps
	@$(MAKE) --no-print-directory B=$(VALGRIND_B) CFLAGS="-O1 -g" sanitizer-build $(VALGRIND_B)/pidfd-shim.so
	@tests/sanitizers/run.sh valgrind $(VALGRIND_B) $(VALGRIND_WHOLE) -- $(VALGRIND_DAEMON)

sanitizer-build: $(BINS) $(B)/test-unit $(IT_BINS) $(HELPER_BINS) $(DEMO_BIN)

# valgrind 3.19 has no pidfd_open(); the shim says what it does instead
$(B)/pidfd-shim.so: tests/support/pidfd-shim.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -shared -pthread -o $@ $< -ldl

.PHONY: check-asan check-valgrind sanitizer-build

clean:
	rm -rf $(B)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
