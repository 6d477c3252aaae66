// The update server from the tutorial this project replaces ("esp8266 self OTA update in HTTPS
// (SSL/TLS) with trusted self signed certificate"), as the tutorial gives it, for
// bench/serve/run.sh. Adapted only where the benchmark needs it: the certificate, key and firmware
// paths and the ports come from the environment (defaults: the tutorial's), and both servers
// listen on 127.0.0.1 only. The update logic (parseFloat of x-esp8266-version against
// LAST_VERSION, response.download of the firmware file, the download counter and its log line)
// is unchanged.
var fs = require('fs');

const express = require('express');
var http = require('http');
var https = require('https');
var privateKey  = fs.readFileSync(process.env.OTA_KEY || 'certificate/server.key', 'utf8');
var certificate = fs.readFileSync(process.env.OTA_CERT || 'certificate/server.crt', 'utf8');

var credentials = {key: privateKey, cert: certificate};

const { networkInterfaces } = require('os');
const path = require('path');

const app = express();
var httpServer = http.createServer(app);
var httpsServer = https.createServer(credentials, app);

const nets = networkInterfaces();

// Server port
const PORT = Number(process.env.PORT || 3000);
const PORT_HTTPS = Number(process.env.PORT_HTTPS || 3443);
const HOST = process.env.HOST || '127.0.0.1';
const FIRMWARE = process.env.FIRMWARE || path.join(__dirname, 'firmware/httpUpdateNew.bin');

app.get('/', (request, response) => response.send('Hello from www.mischianti.org!'));

let downloadCounter = 1;
const LAST_VERSION = 0.3;
app.get('/update', (request, response) => {
    const version = (request.header("x-esp8266-version"))?parseFloat(request.header("x-esp8266-version")):Infinity;

    if (version<LAST_VERSION){
        // If you need an update go here
        response.status(200).download(FIRMWARE, 'httpUpdateNew.bin', (err)=>{
            if (err) {
                console.error("Problem on download firmware: ", err)
            }else{
                downloadCounter++;
            }
        });
        console.log('Your file has been downloaded '+downloadCounter+' times!')
    }else{
        response.status(304).send('No update needed!')
    }
});


httpServer.listen(PORT, HOST, () => {
    const results = {}; // Or just '{}', an empty object

    for (const name of Object.keys(nets)) {
        for (const net of nets[name]) {
            // Skip over non-IPv4 and internal (i.e. 127.0.0.1) addresses
            if (net.family === 'IPv4' && !net.internal) {
                if (!results[name]) {
                    results[name] = [];
                }
                results[name].push(net.address);
            }
        }
    }

    console.log('HTTP Listening on port '+PORT+'\n', results)
});
httpsServer.listen(PORT_HTTPS, HOST, () => console.log('HTTPS Listening on port '+PORT_HTTPS+'\n'));
