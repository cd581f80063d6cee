// capdsl for VS Code: the TextMate grammar colours .cap files; this file
// starts the language server (`capdsl lsp`, over stdio) for diagnostics.
"use strict";

const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

/** The executable: the `capdsl.path` setting, or `capdsl` from PATH. */
function serverExecutable() {
  const configured = vscode.workspace.getConfiguration("capdsl").get("path");
  return typeof configured === "string" && configured.trim() !== "" ? configured.trim() : "capdsl";
}

async function startClient() {
  const command = serverExecutable();
  const serverOptions = { command, args: ["lsp"], transport: TransportKind.stdio };
  const clientOptions = {
    documentSelector: [
      { scheme: "file", language: "cap" },
      { scheme: "untitled", language: "cap" },
    ],
    synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher("**/*.cap") },
  };
  client = new LanguageClient("capdsl", "capdsl language server", serverOptions, clientOptions);
  try {
    await client.start();
  } catch (err) {
    client = undefined;
    vscode.window.showErrorMessage(
      `capdsl: could not start "${command} lsp" (${err && err.message ? err.message : err}). ` +
        "Install capdsl with the lsp extra (pip install 'capdsl[lsp]') or set capdsl.path to its executable."
    );
  }
}

async function stopClient() {
  if (client) {
    const running = client;
    client = undefined;
    await running.stop();
  }
}

async function activate(context) {
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (event.affectsConfiguration("capdsl.path")) {
        await stopClient();
        await startClient();
      }
    }),
    vscode.commands.registerCommand("capdsl.restartServer", async () => {
      await stopClient();
      await startClient();
    })
  );
  await startClient();
}

function deactivate() {
  return stopClient();
}

module.exports = { activate, deactivate, serverExecutable };
