//go:build !sprig

package main

import (
	"encoding/json"
	"text/template"
)

// withSprig tells that sprig's functions are not registered: cases that call them are skipped.
const withSprig = false

// sprigFuncs holds, without sprig, only sprig's toJson, which eKuiper's `json` is.
func sprigFuncs() template.FuncMap {
	return template.FuncMap{"toJson": toJSON}
}

// toJSON is sprig's toJson: the value as JSON, or nothing when it cannot be written.
func toJSON(v interface{}) string {
	out, _ := json.Marshal(v)
	return string(out)
}
