// Package globalnet lets clusters whose pod or service CIDRs overlap join one
// clusterset: it allots each cluster a global CIDR, gives exported services and
// pods global IPs from it, and NATs between global and cluster addresses.
package globalnet
