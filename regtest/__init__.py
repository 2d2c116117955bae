"""An embedded Bitcoin regtest chain: a stand-in for ``bitcoind -regtest``, not Bitcoin Core.

Bitcoin Core cannot be installed on the machines this project is developed
on, so the project ships this small process instead. It serves the JSON-RPC
subset the functionaries use with Bitcoin Core's method names, parameters,
result shapes, error codes and reject reasons (Core 28, unless said
otherwise), over a real regtest chain: the real genesis block, real block and
transaction serialization, proof of work at regtest difficulty, BIP34 heights,
halvings every 150 blocks, coinbase maturity, segwit with witness
commitments, BIP68/112/113 lock times, and a script interpreter for legacy
and witness v0 scripts with the BIP143 signature hash. Tests written against
it run unchanged against Bitcoin Core (``regtest.testing``, MAINCHAIN_RPC_URL).

It deliberately shares no Bitcoin-format code with the federation
(``consensus/mainchain.py``'s transactions, merkle proofs and bech32, or the
signature checks in ``consensus/script.py``): it plays the part of an
independent implementation, so a bug in the peg's parsing or proofs shows up
as a disagreement with this chain instead of being shared by both.

| module     | what it holds                                                         |
|------------|-----------------------------------------------------------------------|
| primitives | transactions, blocks, hashes, compact sizes, merkle roots             |
| params     | regtest's chain parameters and policy constants, passed explicitly    |
| address    | bech32/bech32m and base58check addresses                              |
| script     | the interpreter, both signature hashes, Solver, asm, descriptors      |
| merkle     | BIP37 partial merkle trees (gettxoutproof / verifytxoutproof)         |
| chain      | block index, UTXO set, block validation, reorgs, block templates      |
| mempool    | transaction acceptance in Core's order, BIP125 replacement            |
| wallet     | keys, coin selection, signing                                         |
| store      | SQLite persistence of blocks, wallet keys and the mempool             |
| node       | the above behind one lock, with the clock                             |
| rpc        | the RPC methods                                                       |
| server     | HTTP, authentication, JSON-RPC framing                                |
| testing    | start it for tests, or use a real bitcoind                            |

Where it knowingly differs from Bitcoin Core:

| area        | this stand-in                                   | Bitcoin Core                         |
|-------------|-------------------------------------------------|--------------------------------------|
| identity    | getnetworkinfo: version 280000, subversion      | /Satoshi:28.x.x/                     |
|             | "/regtest-standin:0.1.0/", a warning saying so  |                                      |
| network     | one node, no P2P, loopback RPC only             |                                      |
| taproot     | witness v1 outputs refused: "scriptpubkey" in   | accepted and validated               |
|             | the mempool, "bad-txns-taproot-unsupported" in  |                                      |
|             | blocks, bcrt1p addresses refused by             |                                      |
|             | generatetoaddress and getnewaddress             |                                      |
| bare multisig | refused as "bare-multisig"                    | as with -permitbaremultisig=0        |
| replacement | opt-in (BIP125) by default; --mempoolfullrbf    | Core 28 defaults to full RBF         |
| mempool     | no package relay (testmempoolaccept validates a | package rules, TRUC, sigop limits,   |
|             | list in order on a scratch mempool), no TRUC,   | size limit and its minimum fee       |
|             | no sigop or size limits, ancestor count only    |                                      |
| indexes     | always a transaction index (as -txindex=1)      | optional                             |
| fees        | estimatesmartfee: --feerate if given, else the  | its estimator; "Insufficient data"   |
|             | median fee rate of the last 100 blocks' txs,    | on a fresh chain (same shape here)   |
|             | else Core's "Insufficient data" answer          |                                      |
| wallet      | one wallet named "", random (non-HD) keys, each | descriptor wallets, HD, many wallets |
|             | watched as P2WPKH, P2SH-P2WPKH and P2PKH;       |                                      |
|             | largest-first coin selection; fallback fee      |                                      |
|             | 0.0002 BTC/kvB (as Core's functional tests set) |                                      |
| storage     | SQLite; every start re-validates every block    | LevelDB UTXO set, block files        |
| cookie      | ``<datadir>/.cookie``                           | ``<datadir>/regtest/.cookie``        |
| script errors | a consensus failure names the consensus error | Core 28 named the first (policy)     |
|             | (Core 29, #31097): "mandatory-script-verify-    | error: "(Signature must be zero for  |
|             | flag-failed (Script evaluated without error     | failed CHECK(MULTI)SIG operation)";  |
|             | but finished with a false/empty top stack       | Core 30 says "mempool-script-verify- |
|             | element)" for a bad signature                   | flag-failed (...)"                   |
| extras      | getblockchaininfo has "bits"/"target" and       | Core 29 fields                       |
|             | testmempoolaccept "reject-details"              |                                      |
| stop        | "Regtest stand-in stopping"                     | "Bitcoin Core stopping"              |
"""
