package environ

import "testing"

func TestLookupEnv(t *testing.T) {
	e := Env{"A=1", "B=", "A=2", "C=x=y", "broken"}
	for _, tt := range []struct {
		key    string
		want   string
		wantOK bool
	}{
		{"A", "2", true},
		{"B", "", true},
		{"C", "x=y", true},
		{"D", "", false},
		{"broken", "", false},
	} {
		if got, ok := e.LookupEnv(tt.key); got != tt.want || ok != tt.wantOK {
			t.Errorf("LookupEnv(%q): got (%q, %t), want (%q, %t)", tt.key, got, ok, tt.want, tt.wantOK)
		}
	}
	if len(e.Environ()) != 5 {
		t.Errorf("got %d variables, want 5", len(e.Environ()))
	}
}
