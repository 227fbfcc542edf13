#!/bin/sh
# Recipe 4 by hand: each user asks for each report; explain says why.
BASE=${BASE:-http://127.0.0.1:8080}
export IMAGEGUARD_DB="$DATA/state/04-per-user.db"
for user in alice bob carol; do
    jar=$(mktemp)
    curl -s -o /dev/null -c "$jar" -d user=$user -d password=$user-secret "$BASE/myapp/login"
    for report in plan q3 salaries; do
        curl -s -o /dev/null -b "$jar" -w "%{http_code} $user $report\n" \
            "$BASE/albums/reports/$report.jpg"
    done
    rm -f "$jar"
done
imageguard explain --user carol reports/salaries.jpg
echo "explain's exit status: $? (1: denied)"
