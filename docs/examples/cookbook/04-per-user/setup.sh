#!/bin/sh
# Recipe 4: who may see which report. Run as the store's owner; changes take effect
# at the next request, without a restart.
set -e
export IMAGEGUARD_DB="$DATA/state/04-per-user.db"
imageguard init
imageguard grant 'reports/' group:staff full              # staff: every report
imageguard grant reports/q3.jpg user:bob full             # bob: this one report
imageguard grant reports/salaries.jpg group:staff deny    # not for staff...
imageguard grant reports/salaries.jpg user:alice full     # ...except alice
imageguard group add staff carol                          # carol is staff by the store
