# Included by every Makefile.am.
AM_CPPFLAGS = -I$(top_srcdir) -I$(top_builddir)
AM_CFLAGS = -std=gnu11 $(WARN_CFLAGS) $(SAN_CFLAGS)
AM_LDFLAGS = $(SAN_LDFLAGS)
