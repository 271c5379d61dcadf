package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// dashboardExprs returns every query of docs/grafana-dashboard.json by
// panel, with Grafana's variables replaced by what Prometheus would be
// sent ($instance as a match-all regexp, $__rate_interval as 5m).
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			ID      int
			Title   string
			Targets []struct{ Expr, RefID string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*")
	out := map[string]string{}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			out[fmt.Sprintf("panel %d %q query %s", p.ID, p.Title, tg.RefID)] = vars.Replace(tg.Expr)
		}
	}
	return out
}

// checkRules writes exprs as recording rules and runs promtool check
// rules on them: Prometheus's own parser and rule linter.
func checkRules(t *testing.T, promtool string, exprs map[string]string) ([]byte, error) {
	t.Helper()
	var y strings.Builder
	y.WriteString("groups:\n- name: dashboard\n  rules:\n")
	i := 0
	for name, e := range exprs {
		i++
		q, _ := json.Marshal(e) // a JSON string is a YAML double-quoted scalar
		fmt.Fprintf(&y, "  # %s\n  - record: dashboard:query_%d\n    expr: %s\n", name, i, q)
	}
	f := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(f, []byte(y.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return exec.Command(promtool, "check", "rules", f).CombinedOutput()
}

// TestDashboardQueriesParse: every query of the Grafana dashboard parses
// as PromQL (promtool check rules on a rules file made of them), so a typo
// fails here rather than as an empty panel; a query with a typo does fail
// the check. (TestMetricsScenario checks that the series they name exist.)
func TestDashboardQueriesParse(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install Debian's prometheus package")
	}
	exprs := dashboardExprs(t)
	if len(exprs) < 40 {
		t.Fatalf("only %d queries found in the dashboard", len(exprs))
	}
	t.Logf("%d queries", len(exprs))
	if out, err := checkRules(t, promtool, exprs); err != nil {
		t.Errorf("promtool check rules on the dashboard's %d queries: %v\n%s", len(exprs), err, out)
	}
	typo := map[string]string{"typo": "sum(rate(chorus_rtp_packets_in_total[5m])"}
	if out, err := checkRules(t, promtool, typo); err == nil {
		t.Errorf("promtool passed a query with an unbalanced parenthesis:\n%s", out)
	}
}
