// The host page of `stash2plex serve`: it provides what Stash's PluginApi gives the bundle
// (React, ReactDOM, the react-bootstrap components it uses, register.route) and renders the
// registered Plex page. Patches of Stash's own pages have nothing to patch here.
import React from "react";
import ReactDOM from "react-dom";
import Alert from "react-bootstrap/Alert";
import Badge from "react-bootstrap/Badge";
import Button from "react-bootstrap/Button";
import Card from "react-bootstrap/Card";
import Modal from "react-bootstrap/Modal";
import Table from "react-bootstrap/Table";

const routes = [];
const config = JSON.parse(document.getElementById("stash2plex-config").textContent);

window.Stash2PlexDashboard = { config };
window.PluginApi = {
  React,
  ReactDOM,
  libraries: { Bootstrap: { Alert, Badge, Button, Card, Modal, Table } },
  register: {
    route: (path, component) => routes.push({ path, component }),
    component: () => undefined,
  },
  patch: { before: () => undefined, instead: () => undefined, after: () => undefined },
  components: {},
};

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("root");
  if (!routes.length) {
    root.textContent = "The Stash2Plex bundle did not load.";
    return;
  }
  ReactDOM.render(React.createElement(routes[0].component), root);
});
